import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { createJsonGetter, httpGetJson } from './fetch-json';

// Real servers on port 0: what is tested is which instance a real GET reaches.

interface Instance {
  url: string;
  hits: number;
  status: number;
  close(): Promise<void>;
}

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

/** A server on port 0 that answers every request with `handle`; closed after all tests, if not before. */
async function startServer(handle: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  closers.push(close);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/feed`, close };
}

async function startInstance(name: string): Promise<Instance> {
  const instance: Instance = { url: '', hits: 0, status: 200, close: async () => {} };
  const { url, close } = await startServer((_req, res) => {
    instance.hits += 1;
    res.writeHead(instance.status, { 'content-type': 'application/json' }).end(JSON.stringify({ from: name }));
  });
  return Object.assign(instance, { url, close });
}

async function closedUrl(): Promise<string> {
  const instance = await startInstance('gone');
  await instance.close();
  return instance.url;
}

describe('createJsonGetter', () => {
  it('asks the first instance while it answers', async () => {
    const a = await startInstance('a');
    const b = await startInstance('b');
    const get = createJsonGetter('feed', [a.url, b.url], 1_000);
    expect(await get()).toEqual({ from: 'a' });
    expect(await get()).toEqual({ from: 'a' });
    expect([a.hits, b.hits]).toEqual([2, 0]);
  });

  it('falls over to the next instance when one refuses, and keeps asking that one first', async () => {
    const down = await closedUrl();
    const b = await startInstance('b');
    const get = createJsonGetter('feed', [down, b.url], 1_000);
    expect(await get()).toEqual({ from: 'b' });
    expect(await get()).toEqual({ from: 'b' });
    expect(b.hits).toBe(2);
  });

  it('treats a non-2xx answer as a failure of that instance', async () => {
    const a = await startInstance('a');
    const b = await startInstance('b');
    a.status = 503;
    const get = createJsonGetter('feed', [a.url, b.url], 1_000);
    expect(await get()).toEqual({ from: 'b' });
  });

  it('throws the last failure when no instance answers', async () => {
    const a = await startInstance('a');
    a.status = 500;
    const get = createJsonGetter('feed', [await closedUrl(), a.url], 1_000);
    await expect(get()).rejects.toThrow('feed answered 500');
    expect(() => createJsonGetter('feed', [], 1_000)).toThrow('no URL to fetch the feed from');
  });
});

describe('httpGetJson', () => {
  it('stops reading an answer once it is larger than maxBytes', async () => {
    const { url } = await startServer((req, res) => {
      if (req.url?.includes('small')) return res.end(`\uFEFF${JSON.stringify({ padding: 'x'.repeat(2_000) })}`);
      // More than the limit, and never the end of it.
      res.write(`{"padding":"${'x'.repeat(2_000)}`);
    });
    await expect(httpGetJson(url, 60_000, 1_024)).rejects.toThrow('larger than 1024 bytes');
    expect(await httpGetJson(`${url}/small`, 1_000)).toMatchObject({ status: 200, body: { padding: expect.any(String) } });
  });

  it('gives up on an instance that does not answer in time, and asks the next', async () => {
    const { url: silent } = await startServer(() => {
      // never answers
    });
    const b = await startInstance('b');
    await expect(httpGetJson(silent, 200)).rejects.toThrow(`no answer from ${silent} within 200 ms`);
    expect(await createJsonGetter('feed', [silent, b.url], 200)()).toEqual({ from: 'b' });
  });

  it('times the whole answer, not only its headers, and fails on one cut short', async () => {
    const { url } = await startServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":');
      if (req.url?.includes('cut')) res.destroy();
    });
    await expect(httpGetJson(url, 300)).rejects.toThrow(`no answer from ${url} within 300 ms`);
    await expect(httpGetJson(`${url}/cut`, 60_000)).rejects.toThrow();
  });

  it('fails on a 2xx body that is not JSON; returns the status of a non-2xx answer without reading its body or following it', async () => {
    let redirectsFollowed = 0;
    let stalledClosed = false;
    const { url } = await startServer((req, res) => {
      if (req.url?.includes('elsewhere')) redirectsFollowed += 1;
      else if (req.url?.includes('moved')) res.writeHead(302, { location: '/feed/elsewhere' });
      // An error answer whose body never ends: the client must not keep its connection.
      else if (req.url?.includes('stalled')) {
        req.socket.on('close', () => (stalledClosed = true));
        res.writeHead(503).write('<html>');
      } else res.writeHead(req.headers.accept === 'application/json' ? 200 : 406);
      if (!req.url?.includes('stalled')) res.end('<html>not JSON</html>');
    });
    await expect(httpGetJson(url, 1_000)).rejects.toThrow(SyntaxError);
    expect(await httpGetJson(`${url}/moved`, 1_000)).toEqual({ status: 302 });
    expect(await httpGetJson(`${url}/stalled`, 60_000)).toEqual({ status: 503 });
    for (let waited = 0; !stalledClosed && waited < 2_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stalledClosed).toBe(true);
    expect(redirectsFollowed).toBe(0);
    await expect(httpGetJson('ftp://127.0.0.1/feed', 1_000)).rejects.toThrow('cannot GET ftp: URLs');
  });

  it("does not load Node's fetch (undici) to poll", async () => {
    // In a process of its own: the test runner may have loaded fetch already.
    const a = await startInstance('a');
    const script = [
      `const { createJsonGetter } = require(${JSON.stringify(path.join(__dirname, 'fetch-json.ts'))});`,
      `createJsonGetter('feed', [${JSON.stringify(a.url)}], 1000)().then((body) => {`,
      "  console.log(JSON.stringify({ body, undici: process.moduleLoadList.some((name) => name.includes('undici')) }));",
      '});',
    ].join('\n');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', script], { cwd: path.resolve(__dirname, '../../..') });
    expect(JSON.parse(stdout)).toEqual({ body: { from: 'a' }, undici: false });
  });
});
