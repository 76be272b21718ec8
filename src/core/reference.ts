// Image references: parse and normalise "[registry/]repository[:tag][@digest]" the way
// docker/distribution's ParseNormalizedNamed and go-containerregistry's name.ParseReference do,
// failing with an InvalidReferenceError that names the bad part and says how to fix it.
// Grammar: https://github.com/distribution/reference/blob/main/reference.go
//
// Choices beyond that grammar (all deliberate):
// - Registry hosts are matched case-insensitively and normalised to lowercase (DNS names are
//   case-insensitive); so "LOCALHOST:5000/x" and "Localhost/x" both mean registry "localhost…".
//   Repositories are never lowercased for you: uppercase there is an error with a suggestion.
// - Ports must be 1–65535; IPv6 hosts must be bracketed ("[::1]:5000").
// - Only sha256 digests are accepted: that is all OCI registries are required to serve and all
//   the rest of longshore verifies.
// - The 255-character limit applies to the normalised name ("docker.io/library/…"), as in
//   distribution's Parse, which runs after the docker.io defaults are applied.
// - `familiar` keeps the "docker.io/" prefix when dropping it would make the first path
//   component read as a registry ("docker.io/foo.bar/x"), so parse(familiar) always round-trips.

import { InvalidReferenceError } from './errors.ts';
import { isLoopbackHostname } from './net/destination.ts';

export const DOCKER_HUB_REGISTRY = 'docker.io';
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';
/** distribution's NameTotalLengthMax, applied to "registry/repository". */
export const NAME_MAX_LENGTH = 255;
export const TAG_MAX_LENGTH = 128;

const LEGACY_DOCKER_HUB_REGISTRY = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const SHA256_PREFIX = 'sha256:';
const FILE_NAME_MAX_LENGTH = 255;

// distribution: path-component := alpha-numeric [separator alpha-numeric]*,
// separator := [_.] | __ | [-]+
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const SEPARATOR_RUN = /^(?:[._]|__|-+)$/;
const TAG = /^\w[\w.-]{0,127}$/;
// distribution: domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]; we lowercase first.
const DOMAIN_COMPONENT = /^(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$/;
const IPV6_BODY = /^[0-9a-f:]+$/;
const PORT = /^[0-9]+$/;
const IMAGE_ID = /^[a-f0-9]{64}$/i;

export interface ImageReference {
  /** Registry for naming: 'docker.io', 'ghcr.io', 'localhost:5000', '[::1]:5000'. Lowercase. */
  readonly registry: string;
  /** Host[:port] to send API requests to: 'registry-1.docker.io' for docker.io, else `registry`. */
  readonly apiHost: string;
  /** 'library/alpine', 'owner/repo'. */
  readonly repository: string;
  /** 'latest' when neither tag nor digest was given. */
  readonly tag: string | undefined;
  /** 'sha256:<64 lowercase hex>'. */
  readonly digest: string | undefined;
  /** What to GET /v2/<repository>/manifests/<identifier>: the digest if present, else the tag. */
  readonly identifier: string;
  /** 'docker.io/library/alpine'. */
  readonly name: string;
  /** name + (':' + tag) + ('@' + digest). */
  readonly canonical: string;
  /** Docker's short form: 'alpine:latest', 'user/app:v1', 'ghcr.io/o/r:tag'. */
  readonly familiar: string;
}

/** Which part of the input an InvalidReferenceError is about; carried in `data.part`. */
export type ReferencePart = 'input' | 'registry' | 'repository' | 'name' | 'tag' | 'digest';

export type ParseReferenceResult = { ok: true; ref: ImageReference } | { ok: false; error: InvalidReferenceError };

export function parseReference(input: string): ImageReference {
  const text = checkInput(input);
  const { name, tag, digest } = splitSuffixes(text, input);
  const { rawRegistry, rawRepository } = splitRegistry(name);

  const registry = rawRegistry === undefined ? DOCKER_HUB_REGISTRY : normaliseRegistry(rawRegistry, input);
  checkRepository(
    rawRepository,
    input,
    rawRegistry === undefined,
    (lower) => `${rawRegistry === undefined ? '' : `${rawRegistry}/`}${lower}${text.slice(name.length)}`,
  );
  const repository =
    registry === DOCKER_HUB_REGISTRY && !rawRepository.includes('/') ? OFFICIAL_REPO_PREFIX + rawRepository : rawRepository;

  const fullName = `${registry}/${repository}`;
  if (fullName.length > NAME_MAX_LENGTH) {
    throw invalid(
      input,
      'name',
      fullName,
      `Image name ${quote(fullName)} is ${fullName.length} characters long; the limit is ${NAME_MAX_LENGTH}.`,
      `Registries accept names (registry/repository) of at most ${NAME_MAX_LENGTH} characters; shorten the repository.`,
    );
  }
  if (tag !== undefined) checkTag(tag, input);
  if (digest !== undefined) checkDigest(digest, input);

  return build(registry, repository, tag ?? (digest === undefined ? DEFAULT_TAG : undefined), digest);
}

/** The input as one trimmed word, refusing what is not a name at all (empty, spaces, a URL, an image ID). */
function checkInput(input: string): string {
  if (typeof input !== 'string') {
    throw invalid(
      String(input),
      'input',
      String(input),
      `Image reference must be a string, got ${typeof input}.`,
      'Pass the image name as text, e.g. "alpine:3.20".',
    );
  }
  const text = input.trim();
  if (text === '') {
    throw invalid(
      input,
      'input',
      '',
      'Image reference is empty.',
      'Enter an image name such as "alpine", "user/app:v1" or "ghcr.io/owner/repo:tag".',
    );
  }
  if (/\s/.test(text)) {
    throw invalid(
      input,
      'input',
      text,
      `Image reference ${quote(text)} contains whitespace.`,
      'A reference is a single word such as "alpine:3.20"; remove the spaces.',
    );
  }
  const schemeEnd = text.indexOf('://');
  if (schemeEnd !== -1) {
    const scheme = text.slice(0, schemeEnd + 3);
    throw invalid(
      input,
      'input',
      scheme,
      `Image reference ${quote(text)} starts with the URL scheme ${quote(scheme)}.`,
      `Image references have no scheme: drop ${quote(scheme)} and use ${quote(text.slice(schemeEnd + 3))}.`,
    );
  }
  // distribution's ParseNormalizedNamed refuses these too: 64 hex characters are what
  // `docker images` shows as an image ID, which names an image on one machine, not in a registry.
  if (IMAGE_ID.test(text)) {
    throw invalid(
      input,
      'input',
      text,
      `${quote(text)} is a 64-character hex string, which is an image ID, not an image name.`,
      'An image ID names an image on one machine; a registry needs its name, e.g. "alpine:3.20", or name@sha256:<digest> to pin its content.',
    );
  }
  return text;
}

/** name[:tag][@digest]; the digest grammar has no "@", the tag none of ":" or "/". */
function splitSuffixes(text: string, input: string): { name: string; tag: string | undefined; digest: string | undefined } {
  let name = text;
  let digest: string | undefined;
  const at = name.indexOf('@');
  if (at !== -1) {
    if (name.indexOf('@', at + 1) !== -1) {
      throw invalid(
        input,
        'digest',
        name.slice(at),
        `Image reference ${quote(text)} contains more than one "@".`,
        'Use at most one digest: name[:tag]@sha256:<64 hex characters>.',
      );
    }
    digest = name.slice(at + 1);
    name = name.slice(0, at);
    if (digest === '') {
      throw invalid(
        input,
        'digest',
        '',
        `The digest after "@" is empty in ${quote(text)}.`,
        'Add a digest such as "@sha256:<64 hex characters>", or remove the trailing "@".',
      );
    }
  }
  if (name.startsWith('[') && !name.includes('/')) {
    throw invalid(
      input,
      'repository',
      name,
      `${quote(name)} is a registry address without a repository.`,
      `Add the repository after a "/", e.g. ${quote(`${name}/name:tag`)}.`,
    );
  }
  let tag: string | undefined;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (tag === '') {
      throw invalid(
        input,
        'tag',
        '',
        `The tag after ":" is empty in ${quote(text)}.`,
        `Add a tag such as ${quote(`${name}:latest`)}, or remove the trailing ":".`,
      );
    }
  }
  if (name === '') {
    throw invalid(
      input,
      'repository',
      '',
      `Image reference ${quote(text)} has no repository name.`,
      'Put the image name first, e.g. "alpine:3.20" or "ghcr.io/owner/repo@sha256:…".',
    );
  }
  return { name, tag, digest };
}

/** distribution's splitDockerDomain: the first component is a registry only if it looks like a host. */
function splitRegistry(name: string): { rawRegistry: string | undefined; rawRepository: string } {
  const slash = name.indexOf('/');
  if (slash !== -1) {
    const first = name.slice(0, slash);
    if (looksLikeHost(first)) return { rawRegistry: first, rawRepository: name.slice(slash + 1) };
  }
  return { rawRegistry: undefined, rawRepository: name };
}

function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component.startsWith('[') || component.toLowerCase() === 'localhost';
}

export function tryParseReference(input: string): ParseReferenceResult {
  try {
    return { ok: true, ref: parseReference(input) };
  } catch (err) {
    if (err instanceof InvalidReferenceError) return { ok: false, error: err };
    throw err;
  }
}

/** The same image pinned to `digest`; the tag stays for naming. */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  checkDigest(digest, digest);
  return build(ref.registry, ref.repository, ref.tag, digest);
}

/**
 * A safe file name from the familiar form: "alpine:latest" → "alpine_latest.tar",
 * "ghcr.io/o/r:v1" → "ghcr.io_o_r_v1.tar"; digest-only refs use "sha256-<first 12 hex>".
 * The result uses only [A-Za-z0-9._-] and is at most 255 characters (the usual file-name limit).
 */
export function downloadFileName(ref: ImageReference, ext = '.tar'): string {
  let suffix = ref.tag ?? DEFAULT_TAG;
  if (ref.tag === undefined && ref.digest !== undefined) {
    const sep = ref.digest.indexOf(':');
    suffix = `${ref.digest.slice(0, sep)}-${ref.digest.slice(sep + 1, sep + 13)}`;
  }
  const safeExt = ext.replace(/[^A-Za-z0-9._-]/g, '');
  const base = `${familiarName(ref.registry, ref.repository)}_${suffix}`.replace(/[^A-Za-z0-9._-]/g, '_');
  return base.slice(0, Math.max(1, FILE_NAME_MAX_LENGTH - safeExt.length)) + safeExt;
}

/**
 * True for loopback hosts, with or without a port, case-insensitive: "localhost" and any name
 * under it ("foo.localhost": RFC 6761 §6.3 reserves them for loopback), 127.0.0.0/8, and "::1" or
 * an IPv4-mapped 127.x address ("::ffff:127.0.0.1", RFC 4291 §2.5.5.2) in any spelling, bracketed
 * or not (unbracketed only without a port). Callers default these to plain http, as Docker does.
 */
export function isLoopbackHost(host: string): boolean {
  if (typeof host !== 'string') return false;
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    if (close === -1) return false;
    const after = h.slice(close + 1);
    if (after !== '' && !(after.startsWith(':') && isPort(after.slice(1)))) return false;
    return isLoopbackHostname(h.slice(0, close + 1));
  }
  const colons = h.split(':').length - 1;
  if (colons > 1) return isLoopbackHostname(h);
  const [hostname = '', port] = h.split(':');
  if (port !== undefined && !isPort(port)) return false;
  return isLoopbackHostname(hostname);
}

function build(registry: string, repository: string, tag: string | undefined, digest: string | undefined): ImageReference {
  const name = `${registry}/${repository}`;
  const suffix = (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`);
  return Object.freeze({
    registry,
    apiHost: registry === DOCKER_HUB_REGISTRY ? DOCKER_HUB_API_HOST : registry,
    repository,
    tag,
    digest,
    identifier: digest ?? tag ?? DEFAULT_TAG,
    name,
    canonical: name + suffix,
    familiar: familiarName(registry, repository) + suffix,
  });
}

// distribution's FamiliarName: drop "docker.io/" and a "library/" of a single-component name,
// unless the first remaining component would then be taken for a registry.
function familiarName(registry: string, repository: string): string {
  if (registry !== DOCKER_HUB_REGISTRY) return `${registry}/${repository}`;
  let short = repository;
  if (short.startsWith(OFFICIAL_REPO_PREFIX) && !short.slice(OFFICIAL_REPO_PREFIX.length).includes('/')) {
    short = short.slice(OFFICIAL_REPO_PREFIX.length);
  }
  const slash = short.indexOf('/');
  const first = slash === -1 ? '' : short.slice(0, slash);
  if (first.includes('.') || first === 'localhost') return `${registry}/${repository}`;
  return short;
}

function normaliseRegistry(raw: string, input: string): string {
  const lower = raw.toLowerCase();
  let host: string;
  let port: string | undefined;
  if (lower.startsWith('[')) {
    const close = lower.indexOf(']');
    const body = close === -1 ? '' : lower.slice(1, close);
    const after = close === -1 ? '' : lower.slice(close + 1);
    if (close === -1 || !IPV6_BODY.test(body) || !body.includes(':') || (after !== '' && !after.startsWith(':'))) {
      throw invalid(
        input,
        'registry',
        raw,
        `Registry ${quote(raw)} is not a valid bracketed IPv6 address.`,
        'Write IPv6 registries as "[address]" or "[address]:port", e.g. "[::1]:5000/name".',
      );
    }
    host = lower.slice(0, close + 1);
    port = after === '' ? undefined : after.slice(1);
  } else {
    const colon = lower.indexOf(':');
    host = colon === -1 ? lower : lower.slice(0, colon);
    port = colon === -1 ? undefined : lower.slice(colon + 1);
    if (host === '' || !host.split('.').every((c) => DOMAIN_COMPONENT.test(c))) {
      throw invalid(
        input,
        'registry',
        raw,
        `Registry ${quote(raw)} is not a valid host name.`,
        'A registry is host[:port] made of letters, digits, "-" and ".", e.g. "ghcr.io" or "localhost:5000".',
      );
    }
  }
  if (port !== undefined && !isPort(port)) {
    throw invalid(
      input,
      'registry',
      raw,
      `Registry ${quote(raw)} has an invalid port ${quote(port)}.`,
      'A port is a number from 1 to 65535, e.g. "localhost:5000".',
    );
  }
  const registry = port === undefined ? host : `${host}:${port}`;
  return registry === LEGACY_DOCKER_HUB_REGISTRY ? DOCKER_HUB_REGISTRY : registry;
}

function checkRepository(raw: string, input: string, onDockerHub: boolean, suggest: (lowercased: string) => string): void {
  if (raw === '') {
    throw invalid(
      input,
      'repository',
      '',
      `Image reference ${quote(input.trim())} has no repository after the registry.`,
      'Add the repository after the "/", e.g. "ghcr.io/owner/repo".',
    );
  }
  const lower = raw.toLowerCase();
  for (const component of lower.split('/')) {
    if (component === '') {
      throw invalid(
        input,
        'repository',
        raw,
        `Repository ${quote(raw)} has an empty path component.`,
        'Remove the leading, trailing or doubled "/".',
      );
    }
    if (!PATH_COMPONENT.test(component)) {
      const problem = componentProblem(component);
      throw invalid(
        input,
        'repository',
        raw,
        `Repository ${quote(raw)} has an invalid path component ${quote(component)}: ${problem}.`,
        'Each "/"-separated part is lowercase letters and digits, joined by one ".", one or two "_", or any number of "-".',
      );
    }
  }
  if (lower !== raw) {
    const first = raw.slice(0, raw.indexOf('/'));
    // distribution reads "MYHOST/app" as registry MYHOST; we do not guess (it would send the
    // pull to a host nobody named as one), but say how to name a single-label host.
    if (onDockerHub && first !== '' && first !== first.toLowerCase()) {
      throw invalid(
        input,
        'repository',
        raw,
        `Repository ${quote(raw)} contains uppercase letters; repository names must be lowercase, and ${quote(first)} is not read as a registry: a registry needs a "." or ":" in its name, or is "localhost".`,
        `If ${quote(first)} is a registry, add its port (${quote(`${first.toLowerCase()}:443/${raw.slice(first.length + 1).toLowerCase()}`)}) or its full domain name; otherwise use lowercase: ${quote(suggest(lower))}.`,
      );
    }
    throw invalid(
      input,
      'repository',
      raw,
      `Repository ${quote(raw)} contains uppercase letters; repository names must be lowercase.`,
      `Use lowercase: ${quote(suggest(lower))}.`,
    );
  }
}

function componentProblem(component: string): string {
  const bad = /[^a-z0-9._-]/.exec(component);
  if (bad) return `${quote(bad[0])} is not allowed`;
  if (!/^[a-z0-9]/.test(component) || !/[a-z0-9]$/.test(component)) return 'it must start and end with a letter or digit';
  const run = (component.match(/[._-]+/g) ?? []).find((r) => !SEPARATOR_RUN.test(r)) ?? component;
  return `the separator ${quote(run)} is not allowed`;
}

function checkTag(tag: string, input: string): void {
  if (typeof tag !== 'string' || tag === '') {
    throw invalid(String(input), 'tag', String(tag), 'Tag is empty.', 'Give a tag such as "latest" or "3.20".');
  }
  if (tag.length > TAG_MAX_LENGTH) {
    throw invalid(
      input,
      'tag',
      tag,
      `Tag ${quote(tag)} is ${tag.length} characters long; the limit is ${TAG_MAX_LENGTH}.`,
      `Shorten the tag to at most ${TAG_MAX_LENGTH} characters.`,
    );
  }
  if (!TAG.test(tag)) {
    const bad = /[^\w.-]/.exec(tag);
    const problem = bad ? `contains ${quote(bad[0])}` : 'must start with a letter, digit or "_"';
    throw invalid(
      input,
      'tag',
      tag,
      `Tag ${quote(tag)} ${problem}.`,
      'Tags use letters, digits, "_", "." and "-", and start with a letter, digit or "_".',
    );
  }
}

function checkDigest(digest: string, input: string): void {
  const hintShape = 'A digest looks like "sha256:" followed by 64 lowercase hex characters.';
  if (typeof digest !== 'string' || digest === '') {
    throw invalid(String(input), 'digest', String(digest), 'Digest is empty.', hintShape);
  }
  const colon = digest.indexOf(':');
  if (colon <= 0) {
    throw invalid(input, 'digest', digest, `Digest ${quote(digest)} has no algorithm; expected "sha256:<hex>".`, hintShape);
  }
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm !== 'sha256') {
    throw invalid(
      input,
      'digest',
      digest,
      `Digest algorithm ${quote(algorithm)} is not supported; only sha256 is supported.`,
      algorithm.toLowerCase() === 'sha256' ? 'Write the algorithm in lowercase: "sha256:".' : hintShape,
    );
  }
  const bad = /[^0-9a-fA-F]/.exec(hex);
  if (bad) {
    throw invalid(
      input,
      'digest',
      digest,
      `Digest ${quote(digest)} contains ${quote(bad[0])}, which is not a hex character.`,
      bad[0] === ':' ? `${hintShape} A tag goes before the "@": name:tag@sha256:…` : hintShape,
    );
  }
  if (hex.length !== 64) {
    throw invalid(
      input,
      'digest',
      digest,
      `Digest ${quote(digest)} has ${hex.length} hex characters; sha256 needs exactly 64.`,
      'Copy the whole digest; a sha256 digest has 64 hex characters after "sha256:".',
    );
  }
  if (hex !== hex.toLowerCase()) {
    throw invalid(
      input,
      'digest',
      digest,
      `Digest ${quote(digest)} uses uppercase hex; digests must be lowercase.`,
      `Use ${quote(SHA256_PREFIX + hex.toLowerCase())}.`,
    );
  }
}

function isPort(text: string): boolean {
  if (!PORT.test(text)) return false;
  const n = Number(text);
  return n >= 1 && n <= 65535;
}

// Messages quote the offending text, cut short so a pasted novel does not become the message.
function quote(text: string): string {
  return JSON.stringify(text.length <= 160 ? text : `${text.slice(0, 150)}…`);
}

function invalid(input: string, part: ReferencePart, value: string, message: string, hint: string): InvalidReferenceError {
  return new InvalidReferenceError(message, hint, { input, part, value });
}
