import { mount } from 'svelte';
import App from './App.svelte';
import { PullBridge } from '../browser/bridge.ts';
import { loadAppConfig } from '../browser/app-config.ts';
import { detectCapabilities } from '../browser/capabilities.ts';
import './app.css';

const config = await loadAppConfig();
// ?stallTimeout=ms shortens the watchdog's bound (tests, diagnosis); the default suits real registries.
const stall = Number(new URLSearchParams(location.search).get('stallTimeout'));
const bridge = new PullBridge({ proxyBase: config.proxyBase }, Number.isFinite(stall) && stall > 0 ? { stallMs: stall } : {});
mount(App, { target: document.getElementById('app')!, props: { bridge, capabilities: detectCapabilities() } });
