// Run before `npm test`: make sure npm dependencies and the system tools the tests drive are
// there. On a fresh Debian machine as root it installs what is missing; otherwise it says what to run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const tools = {
  'docker-registry': 'docker-registry',
  skopeo: 'skopeo',
  umoci: 'umoci',
  podman: 'podman',
  chromium: 'chromium',
  htpasswd: 'apache2-utils',
  openssl: 'openssl',
  zstd: 'zstd',
  nginx: 'nginx',
  // e2e in Firefox (WebDriver BiDi) and WebKit (WebKitWebDriver + Epiphany under Xvfb and D-Bus).
  'firefox-esr': 'firefox-esr',
  WebKitWebDriver: 'webkit2gtk-driver',
  Xvfb: 'xvfb',
  xauth: 'xauth',
  'dbus-run-session': 'dbus',
  epiphany: 'epiphany-browser',
};

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const missing = [
  ...new Set(
    Object.entries(tools)
      .filter(([cmd]) => !has(cmd))
      .map(([, pkg]) => pkg),
  ),
];

if (missing.length) {
  const isRoot = process.getuid?.() === 0;
  if (isRoot && has('apt-get')) {
    console.log(`[ensure-test-deps] installing Debian packages: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  } else {
    console.error(`[ensure-test-deps] missing tools; install them with:\n  sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
}

if (!existsSync('node_modules/.package-lock.json')) {
  console.log('[ensure-test-deps] installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
}
