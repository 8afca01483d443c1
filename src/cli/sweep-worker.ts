// A sweep's worker thread: replays the cells it is sent, one at a time, each
// on a machine of its own, and posts the summaries back.

import { parentPort } from 'node:worker_threads';
import { replayFile } from './replay.js';
import type { ReplayFileOptions } from './types.js';

parentPort!.on('message', (m: { i: number; opts: ReplayFileOptions }) => {
  replayFile(m.opts).then(
    (summary) => parentPort!.postMessage({ i: m.i, summary }),
    (e: unknown) => parentPort!.postMessage({ i: m.i, error: `${m.opts.trace} (${m.opts.tlb}, ${m.opts.pages}): ${e instanceof Error ? e.message : String(e)}` }),
  );
});
