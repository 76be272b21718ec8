// Opens IndexedDB (as idb-keyval does) and starts nested module workers, reporting each step.
const say = (m) => postMessage(m);
onmessage = async (e) => {
  const { idb, n, wait } = e.data;
  if (idb) {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open('repro');
      r.onupgradeneeded = () => r.result.createObjectStore('s');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    say('open');
    // Two reads resolved on request success: their transactions are still live below.
    await Promise.all(
      [0, 1].map(
        () =>
          new Promise((resolve) => {
            const tx = db.transaction('s', 'readonly');
            tx.oncomplete = () => say('tx complete');
            tx.objectStore('s').getAllKeys().onsuccess = resolve;
          }),
      ),
    );
    say('read');
  }
  for (let i = 0; i < n; i++) {
    say(`creating ${i}`);
    const w = new Worker(new URL('./inner.js', import.meta.url), { type: 'module', name: `inner-${i}` });
    const hello = new Promise((resolve) => (w.onmessage = resolve));
    say(`created ${i}`);
    hello.then(() => say(`hello ${i}`));
    if (wait) await hello;
  }
  say('all created');
};
