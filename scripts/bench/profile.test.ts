import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { classifyFrame, profileWorkloads, readProfiles, summarizeProfiles, type CpuProfile } from './profile';

const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, url, lineNumber });

describe('classifyFrame', () => {
  it('tells own code from packages, Node.js, native code, GC and idle time', () => {
    expect(classifyFrame(frame('(idle)')).category).toBe('idle');
    // A piscina worker thread waiting for a task is idle, not busy in a package.
    expect(classifyFrame(frame('atomicsWaitLoop', 'file:///w/node_modules/.pnpm/piscina@4/node_modules/piscina/dist/worker.js', 80)).category).toBe('idle');
    expect(classifyFrame(frame('(garbage collector)')).category).toBe('gc');
    expect(classifyFrame(frame('(program)')).category).toBe('program');
    expect(classifyFrame(frame('writev'))).toEqual({ category: 'native', label: 'writev (native)' });
    expect(classifyFrame(frame('setHeader', 'node:_http_outgoing', 652))).toEqual({ category: 'node', label: 'setHeader (node:_http_outgoing:653)' });
    expect(classifyFrame(frame('dispatch', 'file:///w/node_modules/.pnpm/koa-compose@4.1.0/node_modules/koa-compose/index.js', 38))).toEqual({
      category: 'packages',
      pkg: 'koa-compose',
      label: 'dispatch (koa-compose)',
    });
    expect(classifyFrame(frame('match', 'file:///w/node_modules/.pnpm/@koa+router@13/node_modules/@koa/router/lib/router.js', 1)).pkg).toBe('@koa/router');
    expect(classifyFrame(frame('', 'file:///w/dist/content/main.js', 61))).toEqual({ category: 'own', label: '(anonymous) (main.js:62)' });
  });
});

/** A profile of one thread: `samples` are [node id, µs from the previous sample to this one]. */
function profileOf(startTime: number, samples: [number, number][]): CpuProfile {
  return {
    nodes: [
      { id: 1, callFrame: frame('(root)') },
      { id: 2, callFrame: frame('(idle)') },
      { id: 3, callFrame: frame('handler', 'file:///w/dist/content/main.js', 9) },
      { id: 4, callFrame: frame('dispatch', 'file:///w/node_modules/koa-compose/index.js', 38) },
      { id: 5, callFrame: frame('writev') },
    ],
    startTime,
    samples: samples.map(([id]) => id),
    timeDeltas: samples.map(([, delta]) => delta),
  };
}

describe('summarizeProfiles', () => {
  // Samples at 1100, 1200, 1300, … µs; each stands for the time to the next one.
  const profile = profileOf(1000, [
    [3, 100], // 1100: before the window
    [3, 100], // 1200: own code, in (100 µs)
    [4, 100], // 1300: package, in (100 µs)
    [5, 100], // 1400: native, in (100 µs)
    [5, 100], // 1500: native, in (200 µs: the next sample comes 200 µs later)
    [2, 200], // 1700: idle, in
    [4, 100], // 1800: after the window; the last sample, 100 µs
  ]);

  it('counts the samples taken inside the windows, leaving idle ones out', () => {
    const summary = summarizeProfiles([profile], [{ startUs: 1150, endUs: 1750 }]);
    expect(summary).toMatchObject({ threads: 1, samples: 4 });
    expect(summary.sampledMs).toBeCloseTo(0.5);
    expect(summary.categories).toEqual({ own: 0.2, packages: 0.2, node: 0, native: 0.6, gc: 0, program: 0 });
    expect(summary.packages).toEqual([{ name: 'koa-compose', share: 0.2 }]);
    expect(summary.functions[0]).toEqual({ name: 'writev (native)', share: 0.6 });
  });

  it('adds up several windows and several threads', () => {
    const windows = [
      { startUs: 1150, endUs: 1250 },
      { startUs: 1750, endUs: 1850 },
    ];
    const summary = summarizeProfiles([profile, profileOf(1000, [[5, 200]])], windows);
    // Own code at 1200 and koa-compose at 1800 from the first thread (100 µs each), writev at
    // 1200 from the second (its only sample: 200 µs).
    expect(summary).toMatchObject({ threads: 2, samples: 3 });
    expect(summary.sampledMs).toBeCloseTo(0.4);
    expect(summary.categories).toMatchObject({ own: 0.25, packages: 0.25, native: 0.5 });
  });

  it('gives zeros, not NaN, when no sample falls in a window', () => {
    const summary = summarizeProfiles([profile], [{ startUs: 5000, endUs: 6000 }]);
    expect(summary).toMatchObject({ samples: 0, sampledMs: 0, packages: [], functions: [] });
    expect(Object.values(summary.categories)).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('profileWorkloads', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-profile-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads each serving process's profiles from its own directory, and says which are missing or unreadable", async () => {
    await mkdir(path.join(dir, 'content'));
    await writeFile(path.join(dir, 'content', 'CPU.1.cpuprofile'), JSON.stringify(profileOf(0, [[3, 100], [4, 100]])));
    // What a process killed while writing its profile leaves.
    await writeFile(path.join(dir, 'content', 'CPU.2.cpuprofile'), '{"nodes":[{"id":1,');
    const { summaries, problems } = await profileWorkloads(dir, [
      { name: 'gateway-mod', servedBy: ['gateway', 'content'], windows: [{ startUs: 0, endUs: 1000 }] },
    ]);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ workload: 'gateway-mod', process: 'content', threads: 1, samples: 2, sampledMs: 0.2 });
    expect(summaries[0]?.categories).toMatchObject({ own: 0.5, packages: 0.5 });
    expect(problems).toEqual([`gateway left no readable profile in ${path.join(dir, 'gateway')}`, 'content: 1 of its profiles could not be read']);
    expect(await readProfiles(path.join(dir, 'nowhere'))).toEqual({ profiles: [], unreadable: 0 });
  });

  it("attributes a real node --cpu-prof profile by this process's clock", async () => {
    // The child busies itself in its own code between two readings of process.hrtime, which
    // bound the window: the profile's timestamps must be on the same clock for it to count them.
    const script = [
      'const now = () => Number(process.hrtime.bigint() / 1000n);',
      'function spin(ms) { const end = Date.now() + ms; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1); return x; }',
      'spin(50);',
      'const startUs = now(); spin(300); const endUs = now();',
      'console.log(JSON.stringify({ startUs, endUs }));',
    ].join('\n');
    const profileDir = path.join(dir, 'real');
    const { stdout } = await promisify(execFile)(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '-e', script]);
    const window = JSON.parse(stdout) as { startUs: number; endUs: number };
    const summary = summarizeProfiles((await readProfiles(profileDir)).profiles, [window]);
    // About the window's 300 ms sampled (the last sample in it stands for the time to the next,
    // which may reach out a little), the most of it in the script's own function.
    expect(summary.sampledMs).toBeGreaterThan(150);
    expect(summary.sampledMs).toBeLessThan((window.endUs - window.startUs) / 1000 + 100);
    expect(summary.functions[0]?.name).toMatch(/^spin \(/);
  });
});
