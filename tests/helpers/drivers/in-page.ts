// Scripts the harness puts into the page. `ERROR_TRAP` records uncaught errors and unhandled
// rejections (a worker's uncaught error reaches the page's `error` event too, HTML §10.2.5 "runtime
// script errors" in workers); `DOWNLOAD_TRAP` keeps the Blob behind an `<a download>` click, for an
// engine whose driver cannot hand over a real download (WebKit under WebDriver).

export const ERROR_TRAP = `(() => {
  if (window.__e2eErrors) return;
  const errors = window.__e2eErrors = [];
  window.addEventListener('error', (e) => {
    const where = e.filename ? ' (' + e.filename + ':' + e.lineno + ')' : '';
    errors.push('uncaught: ' + (e.error && e.error.stack ? e.error.stack : e.message) + where);
  });
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    errors.push('unhandled rejection: ' + (r && r.stack ? r.stack : (r && r.message) || String(r)));
  });
})();`;

export const DOWNLOAD_TRAP = `(() => {
  if (window.__e2eDownloads) return;
  const downloads = window.__e2eDownloads = [];
  const click = HTMLAnchorElement.prototype.click;
  HTMLAnchorElement.prototype.click = function () {
    if (this.hasAttribute('download') && this.href.startsWith('blob:')) {
      const name = this.getAttribute('download');
      downloads.push(fetch(this.href).then((r) => r.blob()).then((blob) => ({ name, blob })));
      return;
    }
    return click.call(this);
  };
})();`;
