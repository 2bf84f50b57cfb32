import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJsonGetter } from './fetch-json';

// Real servers on port 0: what is tested is which instance a real GET reaches.

interface Instance {
  url: string;
  hits: number;
  status: number;
  close(): Promise<void>;
}

const instances: Instance[] = [];
afterAll(async () => {
  for (const instance of instances) await instance.close();
});

async function startInstance(name: string): Promise<Instance> {
  const server = http.createServer((_req, res) => {
    instance.hits += 1;
    res.writeHead(instance.status, { 'content-type': 'application/json' }).end(JSON.stringify({ from: name }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const instance: Instance = {
    url: `http://127.0.0.1:${port}/feed`,
    hits: 0,
    status: 200,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  instances.push(instance);
  return instance;
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
