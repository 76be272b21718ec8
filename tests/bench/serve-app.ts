// `src/proxy/serve.ts`'s main, with the static directory as an argument: the benchmark serves its
// own fresh build (.cache/bench/dist) so it measures the working tree without rebuilding the
// dist/ other test runs are reading. Same config loading (LONGSHORE_CONFIG, LONGSHORE_PORT), same
// server, same "listening on" line.
//   node --import tsx tests/bench/serve-app.ts STATIC_DIR
import { loadConfig } from '../../src/proxy/config.ts';
import { startServer } from '../../src/proxy/serve.ts';

const staticDir = process.argv[2];
if (!staticDir) {
  console.error('usage: serve-app.ts STATIC_DIR');
  process.exit(2);
}
const running = await startServer(await loadConfig(), { staticDir });
console.log(`longshore listening on ${running.url}`);
const stop = (): void => {
  running.close().then(() => process.exit(0), () => process.exit(1));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
