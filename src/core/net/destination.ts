// Classifies a host by its literal form: loopback, private, link-local and other
// non-public addresses (RFC 6890 special-purpose registries). Pure: names are not resolved here;
// the proxy's handler may additionally check what a name resolves to (src/proxy/handler.ts
// `lookup`). The one place both the proxy and the core decide what is loopback.

/** Why a host is not a public destination, or undefined when it is public (by its literal form). */
export type NonPublicKind = 'loopback' | 'private' | 'link-local' | 'unspecified' | 'reserved';

/**
 * `host` is a URL hostname (`URL.hostname`: lower-case, IPv6 in brackets, IPv4 in dotted form;
 * the WHATWG URL parser already turned `2130706433` or `0x7f.1` into `127.0.0.1`).
 */
export function classifyHost(host: string): NonPublicKind | undefined {
  const name = host.toLowerCase().replace(/\.$/, '');
  // Every label non-empty: `.localhost` or `a..localhost` are not names at all.
  if ((name === 'localhost' || name.endsWith('.localhost')) && name.split('.').every((label) => label !== '')) return 'loopback';
  if (name.startsWith('[') && name.endsWith(']')) return classifyIPv6(name.slice(1, -1));
  if (name.includes(':')) return classifyIPv6(name);
  const v4 = parseIPv4(name);
  return v4 === undefined ? undefined : classifyIPv4(v4);
}

/**
 * True for hosts that name the local machine itself: `localhost` and every `*.localhost` name
 * (RFC 6761 6.3: they resolve to loopback), 127.0.0.0/8, ::1 and the IPv4-mapped forms of those.
 */
export function isLoopbackHostname(host: string): boolean {
  return classifyHost(host) === 'loopback';
}

/** A resolved address (from DNS) in textual form, as node's dns.lookup returns it. */
export function classifyAddress(address: string): NonPublicKind | undefined {
  return address.includes(':') ? classifyIPv6(address) : classifyHost(address);
}

function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    // No leading zeros (`127.0.0.01`): the URL parser never produces them, and typed ones are ambiguous.
    if (!/^(?:0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

/** [network, prefix length, kind] for IPv4, most specific first where they overlap. */
const IPV4_RANGES: ReadonlyArray<readonly [number, number, NonPublicKind]> = [
  [ip4(0, 0, 0, 0), 8, 'unspecified'], // "this network"
  [ip4(10, 0, 0, 0), 8, 'private'],
  [ip4(100, 64, 0, 0), 10, 'private'], // carrier-grade NAT (RFC 6598)
  [ip4(127, 0, 0, 0), 8, 'loopback'],
  [ip4(169, 254, 0, 0), 16, 'link-local'], // includes cloud metadata 169.254.169.254
  [ip4(172, 16, 0, 0), 12, 'private'],
  [ip4(192, 0, 0, 0), 24, 'reserved'], // IETF protocol assignments
  [ip4(192, 0, 2, 0), 24, 'reserved'], // documentation (RFC 5737)
  [ip4(192, 168, 0, 0), 16, 'private'],
  [ip4(198, 18, 0, 0), 15, 'reserved'], // benchmarking
  [ip4(198, 51, 100, 0), 24, 'reserved'], // documentation
  [ip4(203, 0, 113, 0), 24, 'reserved'], // documentation
  [ip4(224, 0, 0, 0), 4, 'reserved'], // multicast
  [ip4(240, 0, 0, 0), 4, 'reserved'], // reserved + broadcast
];

function ip4(a: number, b: number, c: number, d: number): number {
  return ((a * 256 + b) * 256 + c) * 256 + d;
}

function classifyIPv4(value: number): NonPublicKind | undefined {
  for (const [network, bits, kind] of IPV4_RANGES) {
    const size = 2 ** (32 - bits);
    if (value >= network && value < network + size) return kind;
  }
  return undefined;
}

/** Parses an IPv6 literal (without brackets, optional zone) into eight 16-bit groups. */
function parseIPv6(text: string): number[] | undefined {
  let s = text.replace(/%.*$/, '');
  const groups: number[] = [];
  // A trailing dotted IPv4 (::ffff:1.2.3.4) becomes two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  let tail: number[] = [];
  if (dotted) {
    const v4 = parseIPv4(dotted[1]!);
    if (v4 === undefined) return undefined;
    tail = [Math.floor(v4 / 65536), v4 % 65536];
    s = s.slice(0, -dotted[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !rest) return undefined;
  const known = head.length + rest.length + tail.length;
  if (halves.length === 2) {
    if (known > 7) return undefined;
    groups.push(...head, ...new Array<number>(8 - known).fill(0), ...rest, ...tail);
  } else {
    if (known !== 8) return undefined;
    groups.push(...head, ...tail);
  }
  return groups;
}

function classifyIPv6(text: string): NonPublicKind | undefined {
  const g = parseIPv6(text);
  // Not an address we can read: refuse rather than guess.
  if (!g) return 'reserved';
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const embeddedV4 = g6 * 65536 + g7;
  const zeroHigh64 = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0;
  if (zeroHigh64 && g4 === 0) {
    if (g5 === 0 && g6 === 0 && g7 === 0) return 'unspecified'; // ::
    if (g5 === 0 && g6 === 0 && g7 === 1) return 'loopback'; // ::1
    // IPv4-mapped ::ffff:0:0/96 (RFC 4291 2.5.5.2) reaches the IPv4 host on a dual-stack socket;
    // IPv4-compatible ::/96 (deprecated, 2.5.5.1) is refused when it is not a public address.
    if (g5 === 0xffff) return classifyIPv4(embeddedV4);
    if (g5 === 0) return classifyIPv4(embeddedV4) ?? 'reserved';
  }
  // IPv4-translated ::ffff:0:0:0/96 (RFC 2765 SIIT), e.g. [::ffff:0:7f00:1].
  if (zeroHigh64 && g4 === 0xffff && g5 === 0) return classifyIPv4(embeddedV4) ?? 'reserved';
  if (zeroHigh64) return 'reserved'; // the rest of ::/64 is unassigned
  // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) carries an IPv4 address.
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return classifyIPv4(embeddedV4);
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 1) return 'private'; // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && g3 === 0) return 'reserved'; // discard-only 100::/64 (RFC 6666)
  // Teredo 2001::/32 hides an IPv4 address (XOR-ed); its target cannot be judged, so refuse.
  if (g0 === 0x2001 && g1 === 0) return 'reserved';
  if (g0 === 0x2001 && g1 === 0xdb8) return 'reserved'; // documentation (RFC 3849)
  // 6to4 2002::/16 carries an IPv4 address in groups 1-2.
  if (g0 === 0x2002) return classifyIPv4(g1 * 65536 + g2);
  if ((g0 & 0xfe00) === 0xfc00) return 'private'; // unique local fc00::/7
  if ((g0 & 0xffc0) === 0xfe80) return 'link-local'; // fe80::/10
  if ((g0 & 0xffc0) === 0xfec0) return 'private'; // site-local fec0::/10 (deprecated, RFC 3879)
  if ((g0 & 0xff00) === 0xff00) return 'reserved'; // multicast
  return undefined;
}
