/** Worker thread of Sha256List.read: reads and parses a sha256file off the event loop, hands back its digests. */
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { parseSha256File, type ParsedSha256File } from './sha256-list.js';

let answer: ParsedSha256File;
try {
  answer = parseSha256File(readFileSync(workerData as string, 'utf8'));
} catch (error) {
  answer = { failure: 'read', code: (error as NodeJS.ErrnoException).code ?? 'EIO', message: (error as Error).message };
}
parentPort!.postMessage(answer, 'digests' in answer ? [answer.digests] : []);
