import { mount } from 'svelte';
import App from './App.svelte';
import { PullBridge } from '../browser/bridge.ts';
import { loadAppConfig } from '../browser/app-config.ts';
import { createTagService } from '../browser/tag-service.ts';
import { ImageCatalog, browserStorageService } from '../browser/image-catalog.ts';
import { IdbBlobStore } from '../browser/idb-store.ts';
import './app.css';

const config = await loadAppConfig();
const bridge = new PullBridge({ proxyBase: config.proxyBase });
mount(App, { target: document.getElementById('app')!, props: { bridge, tagService: createTagService(config.proxyBase), storageService: browserStorageService(new ImageCatalog(), new IdbBlobStore()) } });
