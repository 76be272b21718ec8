// Hand a finished archive Blob to the user (the last-fallback destination): a download through an
// object URL. The Blob is composed of IndexedDB-backed parts, so the browser streams it to disk
// without a JS copy.

export function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  // Revoke later: the download has taken its own reference by then.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
