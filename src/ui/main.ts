import { mount } from 'svelte';
import App from './App.svelte';
import { PullBridge } from '../browser/bridge.ts';
import { loadAppConfig } from '../browser/app-config.ts';
import { detectCapabilities } from '../browser/capabilities.ts';
import { createTagService } from '../browser/tag-service.ts';
import { browserSaver } from '../browser/save/choose.ts';
import { PullJournal } from '../browser/journal.ts';
import { IdbBlobStore } from '../browser/idb-store.ts';
import { UnfinishedPulls } from './state/unfinished.svelte.ts';
import { ImageCatalog, browserStorageService } from '../browser/image-catalog.ts';
import './app.css';

const config = await loadAppConfig();
const params = new URLSearchParams(location.search);
/** A whole number of at least `min` given as `?name=`, else undefined. */
const whole = (name: string, min = 0): number | undefined => {
  const text = params.get(name);
  return text !== null && /^\d+$/.test(text) && Number(text) >= min ? Number(text) : undefined;
};
// ?stallTimeout=ms shortens the watchdog's bound (tests, diagnosis); the default suits real registries.
const stall = whole('stallTimeout', 1);
// ?followFrom=bytes: the smallest blob a picked file writes while it downloads (tests; see FOLLOW_FROM_BYTES).
const followFrom = whole('followFrom');
// ?ranges=N (1: off) and ?rangesFrom=bytes: parallel ranges for big blobs (see DEFAULT_PARALLEL in core/pull.ts).
const connections = whole('ranges', 1);
const threshold = whole('rangesFrom');
const parallel = { ...(connections !== undefined ? { connections } : {}), ...(threshold !== undefined ? { threshold } : {}) };
const bridge = new PullBridge(
  {
    proxyBase: config.proxyBase,
    ...(followFrom !== undefined ? { followFrom } : {}),
    ...(Object.keys(parallel).length > 0 ? { parallel } : {}),
  },
  stall !== undefined ? { stallMs: stall } : {},
);
const store = new IdbBlobStore();
const unfinished = new UnfinishedPulls(new PullJournal(), async (keys) => {
  for (const key of keys) await store.delete(key);
});
mount(App, {
  target: document.getElementById('app')!,
  props: {
    bridge,
    saver: browserSaver(),
    unfinished,
    tagService: createTagService(config.proxyBase),
    storageService: browserStorageService(new ImageCatalog(), store),
    capabilities: detectCapabilities(),
  },
});
