import { waitFor } from '@gatehouse/testing';
import { startService, type ServiceProcess } from './stack';

// A service whose log reader stalls (a full pipe, a stuck log driver) keeps answering: its log
// lines wait in memory instead of blocking the event loop, and reach the reader once it reads
// again. Real process, real pipe: the test stops reading the service's stdout.

// Enough lines (about 150 bytes each) to overfill the pipe several times.
const REQUESTS = 4_000;
const TEST_TIMEOUT_MS = 90_000;

let content: ServiceProcess | undefined;

afterAll(async () => {
  if (!content) return;
  content.child.stdout?.resume();
  content.child.kill('SIGTERM');
  await content.exited;
});

it(
  'answers every request while nobody reads its logs, and writes every line once they are read again',
  async () => {
    // No auth behind it: /api/test/all needs no token, and every request logs a line at info.
    content = await startService('services/content/src/main.ts', { LOG_LEVEL: 'info', AUTH_URL: 'http://127.0.0.1:9' });
    const service = content;
    const stdout = service.child.stdout;
    if (!stdout) throw new Error('no stdout pipe');
    // From here the pipe fills (the socket's buffers and this side's, a few hundred KiB: some
    // thousand lines at most), then every write to it would wait.
    stdout.pause();

    const statuses: (number | string)[] = [];
    for (let sent = 0; sent < REQUESTS; sent += 20) {
      const batch = Array.from({ length: 20 }, () =>
        fetch(`${service.url}/api/test/all`, { signal: AbortSignal.timeout(5_000) }).then(
          (res) => res.status,
          (err: unknown) => (err instanceof Error ? err.name : 'failed'),
        ),
      );
      statuses.push(...(await Promise.all(batch)));
      if (statuses.some((status) => status !== 200)) break; // stalled: no need to wait out every batch
    }
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    const requestLines = () => service.output().split('\n').filter((line) => line.includes('"/api/test/all"')).length;
    // The reader did stall: lines are still held back.
    expect(requestLines()).toBeLessThan(REQUESTS);

    stdout.resume();
    await waitFor(() => requestLines() >= REQUESTS, { timeoutMs: 30_000, what: 'every access line' });
    expect(requestLines()).toBe(REQUESTS);
  },
  TEST_TIMEOUT_MS,
);
