/**
 * The REST transport end to end: the express app on a unix socket in a temp
 * dir, over a real store and services, driven with the typed client and with
 * plain fetch. Every response is checked against the OpenAPI document, and
 * every rejected request is checked to have stored nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { createNetkeepClient, problem, unwrap, type NetkeepClient } from '../../clients/netkeep-client.js';
import { createRestApp, listenRest, parseListen } from '../../src/api/rest/app.js';
import { fieldFromPointer } from '../../src/api/rest/errors.js';
import { presentResource } from '../../src/api/rest/present.js';
import { etagFromIfMatch } from '../../src/api/rest/router.js';
import { KINDS, type Kind } from '../../src/domain/types.js';
import { createServices } from '../../src/service/index.js';
import type { Services } from '../../src/service/types.js';
import { openStore } from '../../src/store/index.js';
import { assertDocumentedResponse, assertMatchesSchema, checkResponse, pathTemplate, validateResponses } from '../support/openapi.js';

type Json = Record<string, any>;

interface Answer {
  status: number;
  headers: Headers;
  body: Json | undefined;
}

/** A captured pino log, one parsed line per entry. */
function captureLog(): { logger: pino.Logger; lines: Json[] } {
  const lines: Json[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/** A daemon-like REST server over a fresh in-memory store. */
async function startServer(dir: string, sock = 'rest.sock', services?: Services) {
  let ready = true;
  const store = openStore(':memory:');
  let changes = 0;
  const svc =
    services ??
    createServices(store, {
      onChange: () => {
        changes++;
      },
      ready: () => ready,
    });
  const log = captureLog();
  const socketPath = path.join(dir, sock);
  const server = await listenRest(createRestApp(svc, log.logger), `unix:${socketPath}`);
  const agent = new Agent({ connect: { socketPath } });

  /** Plain fetch over the socket; the answer is checked against the OpenAPI document. */
  async function call(
    method: string,
    urlPath: string,
    opts: { json?: unknown; raw?: string; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined;
    if (opts.json !== undefined) body = JSON.stringify(opts.json);
    if (opts.raw !== undefined) body = opts.raw;
    if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const res = await undiciFetch(`http://localhost${urlPath}`, { method, headers, body, dispatcher: agent });
    const parsed = (await checkResponse(method, urlPath, res as unknown as Response)) as Json | undefined;
    return { status: res.status, headers: res.headers as unknown as Headers, body: parsed };
  }

  const client = createNetkeepClient({ socketPath });
  client.use(validateResponses);

  return {
    socketPath,
    server,
    client,
    call,
    log: log.lines,
    setReady: (r: boolean) => {
      ready = r;
    },
    changes: () => changes,
    async close() {
      await client.close();
      await agent.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Server = Awaited<ReturnType<typeof startServer>>;

/** A GET with node:http over the socket, checked against the OpenAPI document. */
function rawGet(socketPath: string, urlPath: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = httpRequest({ socketPath, path: urlPath, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        try {
          const template = pathTemplate(urlPath)!;
          assertDocumentedResponse('GET', template, res.statusCode!, res.headers['content-type'] ?? null, body);
          resolve({ status: res.statusCode!, headers: res.headers, body });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every stored resource of every kind, as the API shows it. */
async function snapshot(s: Server): Promise<Record<Kind, unknown[]>> {
  const out = {} as Record<Kind, unknown[]>;
  for (const kind of KINDS) {
    const r = await s.call('GET', `/v1/${kind}?pageSize=1000`);
    assert.equal(r.status, 200);
    assert.equal(r.body!.nextPageToken, '');
    out[kind] = r.body!.items;
  }
  return out;
}

interface Rejection {
  status: number;
  code: string;
  /** A violation must name this field; undefined: no field expected. */
  field?: string;
  /** The detail must contain each of these. */
  detail?: string[];
}

function assertRejected(r: Answer, want: Rejection, label = ''): void {
  const msg = `${label} ${JSON.stringify(r.body)}`;
  assert.equal(r.status, want.status, msg);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, msg);
  assert.equal(r.body!.code, want.code, msg);
  assert.equal(r.body!.status, want.status, msg);
  if (want.field !== undefined) {
    assert.ok(
      (r.body!.violations as { field: string }[]).some((v) => v.field === want.field),
      `${label}: expected a violation naming "${want.field}", got ${JSON.stringify(r.body!.violations)}`,
    );
  }
  for (const d of want.detail ?? []) assert.ok((r.body!.detail as string).includes(d), `${label}: detail lacks "${d}": ${msg}`);
}

/** Runs a request that must be rejected, and checks nothing was stored or changed. */
async function rejects(s: Server, send: () => Promise<Answer>, want: Rejection, label = ''): Promise<Answer> {
  const before = await snapshot(s);
  const changes = s.changes();
  const r = await send();
  assertRejected(r, want, label);
  assert.deepEqual(await snapshot(s), before, `${label}: a rejected request changed the stored state`);
  assert.equal(s.changes(), changes, `${label}: a rejected request triggered the reconciler`);
  return r;
}

let dir: string;
let s: Server;
let nk: NetkeepClient;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'netkeep-rest-'));
  s = await startServer(dir);
  nk = s.client;
});

after(async () => {
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('serving', () => {
  test('the unix socket has mode 0660 and health answers', async () => {
    assert.equal((await stat(s.socketPath)).mode & 0o777, 0o660);
    const h = await nk.GET('/healthz');
    assert.deepEqual(h.data, { status: 'SERVING' });
    const r = await nk.GET('/readyz');
    assert.equal(r.response.status, 200);
  });

  test('while not ready: /v1 is 503 UNAVAILABLE, /healthz 200, /readyz 503, nothing stored', async () => {
    const before = await snapshot(s);
    s.setReady(false);
    try {
      assert.equal((await s.call('GET', '/healthz')).status, 200);
      assertRejected(await s.call('GET', '/readyz'), { status: 503, code: 'UNAVAILABLE' });
      const list = await s.call('GET', '/v1/bridges');
      assertRejected(list, { status: 503, code: 'UNAVAILABLE' });
      assert.equal(list.headers.get('retry-after'), '1');
      assertRejected(await s.call('POST', '/v1/namespaces', { json: { name: 'early' } }), { status: 503, code: 'UNAVAILABLE' });
      assertRejected(await s.call('GET', '/v1/no-such-kind'), { status: 503, code: 'UNAVAILABLE' });
    } finally {
      s.setReady(true);
    }
    assert.deepEqual(await snapshot(s), before);
  });

  test('a stale socket is replaced; a live one, or a file that is not a socket, is left alone', async () => {
    const stale = path.join(dir, 'stale.sock');
    // A process that exits without closing its server leaves its socket file behind.
    const child = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    assert.equal(child.status, 0);
    assert.ok((await stat(stale)).isSocket());
    const other = await startServer(dir, 'stale.sock');
    try {
      assert.equal((await other.call('GET', '/healthz')).status, 200);
      await assert.rejects(listenRest(createRestApp(createServices(openStore(':memory:'), { onChange() {}, ready: () => true }), pino({ level: 'silent' })), `unix:${stale}`), /in use/);
    } finally {
      await other.close();
    }
    const file = path.join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    await assert.rejects(listenRest(createRestApp(createServices(openStore(':memory:'), { onChange() {}, ready: () => true }), pino({ level: 'silent' })), `unix:${file}`), /not a socket/);
  });

  test('host:port listens on TCP, and the client talks to it with baseUrl', async () => {
    const services = createServices(openStore(':memory:'), { onChange() {}, ready: () => true });
    const server: HttpServer = await listenRest(createRestApp(services, pino({ level: 'silent' })), '127.0.0.1:0');
    const { port } = server.address() as net.AddressInfo;
    const tcp = createNetkeepClient({ baseUrl: `http://127.0.0.1:${port}` });
    tcp.use(validateResponses);
    try {
      const r = await tcp.POST('/v1/namespaces', { body: { name: 'over-tcp' } });
      assert.equal(r.response.status, 201);
      assert.equal(unwrap(await tcp.GET('/v1/namespaces')).items.length, 1);
    } finally {
      await tcp.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('listen addresses', () => {
    assert.deepEqual(parseListen('unix:/run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
    assert.deepEqual(parseListen('127.0.0.1:8080'), { kind: 'tcp', host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListen('[::1]:8080'), { kind: 'tcp', host: '::1', port: 8080 });
    assert.deepEqual(parseListen(':8080'), { kind: 'tcp', host: '', port: 8080 });
    assert.throws(() => parseListen('unix:'));
    assert.throws(() => parseListen('localhost'));
    assert.throws(() => parseListen('host:99999'));
  });

  test('an unexpected error is 500 INTERNAL with a generic detail, and its stack is logged', async () => {
    const real = createServices(openStore(':memory:'), { onChange() {}, ready: () => true });
    const broken: Services = {
      ...real,
      bridges: Object.assign(Object.create(real.bridges) as typeof real.bridges, {
        get(): never {
          throw new Error('sqlite exploded: secret path /var/lib/x');
        },
      }),
    };
    const b = await startServer(dir, 'broken.sock', broken);
    try {
      const r = await b.call('GET', '/v1/bridges/x');
      assertRejected(r, { status: 500, code: 'INTERNAL' });
      assert.ok(!JSON.stringify(r.body).includes('secret'), 'the cause leaked to the caller');
      const logged = b.log.find((l) => l.level === 50);
      assert.ok(logged, 'nothing logged at error level');
      assert.match(logged.err.stack, /sqlite exploded/);
    } finally {
      await b.close();
    }
  });
});

describe('resources', () => {
  test('create and get: 201, Location, ETag, proto3 JSON forms', async () => {
    const r = await nk.POST('/v1/namespaces', { body: { name: 'ns-a', labels: { team: 'net' } } });
    assert.equal(r.response.status, 201);
    const ns = r.data!;
    assert.equal(r.response.headers.get('location'), '/v1/namespaces/ns-a');
    assert.equal(r.response.headers.get('etag'), `"${ns.etag}"`);
    assert.equal(ns.generation, '1');
    assert.deepEqual(ns.labels, { team: 'net' });
    assert.deepEqual(ns.status, { state: 'PENDING', message: '', observedGeneration: '0' });
    assert.ok(!('lastReconcileTime' in ns.status));
    assert.ok(!Number.isNaN(Date.parse(ns.createTime)));

    const g = await nk.GET('/v1/namespaces/{name}', { params: { path: { name: 'ns-a' } } });
    assert.deepEqual(g.data, ns);
    assert.equal(g.response.headers.get('etag'), `"${ns.etag}"`);
  });

  test('bridge defaults and normalization', async () => {
    const r = await nk.POST('/v1/bridges', {
      body: { name: 'br-a', namespace: 'ns-a', mtu: 9000, addresses: ['10.10.0.1/24', 'FD00:0:0::1/64'] },
    });
    assert.equal(r.response.status, 201, JSON.stringify(r.error));
    const br = r.data!;
    assert.equal(br.ifname, 'br-a');
    assert.deepEqual(br.addresses, ['10.10.0.1/24', 'fd00::1/64']);
    assert.match(br.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(parseInt(br.mac.slice(0, 2), 16) & 0b11, 0b10, 'derived MAC is locally administered unicast');
    assert.equal(br.vlanFiltering, false);
    assert.deepEqual(br.status, { state: 'PENDING', message: '', observedGeneration: '0', ifindex: 0, mac: '', poolAddresses: [] });

    const m = await nk.POST('/v1/bridges', { body: { name: 'br-mac', mac: '02:AB:CD:00:00:01', ifname: 'brmac0' } });
    assert.equal(m.data!.mac, '02:ab:cd:00:00:01');
    assert.equal(m.data!.namespace, '');
  });

  test('veth pair on a bridge, and a route', async () => {
    const v = await nk.POST('/v1/veths', {
      body: {
        name: 'veth-a',
        mtu: 9000,
        a: { ifname: 'va-host', namespace: 'ns-a', bridge: 'br-a' },
        b: { ifname: 'eth0', namespace: '', addresses: ['10.10.0.2/24'] },
      },
    });
    assert.equal(v.response.status, 201, JSON.stringify(v.error));
    assert.deepEqual(v.data!.a, { ifname: 'va-host', namespace: 'ns-a', bridge: 'br-a', addresses: [], mac: '', addressPools: [] });
    assert.deepEqual(v.data!.status.a, { ifindex: 0, mac: '', poolAddresses: [] });

    const rt = await nk.POST('/v1/routes', {
      body: { name: 'rt-a', namespace: 'ns-a', destination: '10.60.0.0/16', via: '10.10.0.254', metric: 100 },
    });
    assert.equal(rt.response.status, 201, JSON.stringify(rt.error));
    assert.equal(rt.data!.device, '');
  });

  test('read-only fields sent back are accepted and ignored', async () => {
    const r = await s.call('POST', '/v1/namespaces', {
      json: { name: 'ns-ro', generation: '99', etag: 'x', createTime: 'yesterday', status: { state: 'READY' } },
    });
    assert.equal(r.status, 201);
    assert.equal(r.body!.generation, '1');
    assert.equal(r.body!.status.state, 'PENDING');
    assert.notEqual(r.body!.createTime, 'yesterday');
  });

  test('list with pageSize=1 walks every page exactly once', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await nk.POST('/v1/namespaces', { body: { name: `page-${i}` } })).response.status, 201);
    const all = unwrap(await nk.GET('/v1/namespaces', { params: { query: { pageSize: 1000 } } }));
    assert.equal(all.nextPageToken, '');
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = unwrap(await nk.GET('/v1/namespaces', { params: { query: { pageSize: 1, pageToken } } }));
      assert.equal(page.items.length, 1);
      seen.push(page.items[0]!.name);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 100);
    assert.deepEqual(seen, all.items.map((n) => n.name));
    assert.deepEqual(seen, [...seen].sort());
    assert.ok(seen.includes('page-4') && seen.length >= 6);
  });

  test('bad pageSize and pageToken are 400 naming them', async () => {
    assert.equal((await s.call('GET', '/v1/namespaces?pageSize=0')).status, 200, 'pageSize=0 means the default, as over gRPC');
    for (const q of ['pageSize=-1', 'pageSize=1001', 'pageSize=abc', 'pageSize=1.5']) {
      assertRejected(await s.call('GET', `/v1/namespaces?${q}`), { status: 400, code: 'INVALID_ARGUMENT', field: 'pageSize' }, q);
    }
    assertRejected(await s.call('GET', '/v1/namespaces?pageToken=garbage'), { status: 400, code: 'INVALID_ARGUMENT', field: 'pageToken' });
    const bridgesPage = unwrap(await nk.GET('/v1/bridges', { params: { query: { pageSize: 1 } } }));
    assert.notEqual(bridgesPage.nextPageToken, '');
    assertRejected(
      await s.call('GET', `/v1/namespaces?pageToken=${bridgesPage.nextPageToken}`),
      { status: 400, code: 'INVALID_ARGUMENT', field: 'pageToken' },
      'a token of another kind',
    );
    assertRejected(await s.call('GET', '/v1/namespaces?color=red'), { status: 400, code: 'INVALID_ARGUMENT', field: 'color' });
  });

  test('PATCH is a JSON merge patch: fields, labels, null resets', async () => {
    const name = 'br-patch';
    const created = unwrap(await nk.POST('/v1/bridges', { body: { name, mtu: 1400, labels: { a: '1', b: '2' } } }));
    const path = { name };

    const p1 = await nk.PATCH('/v1/bridges/{name}', {
      params: { path },
      headers: { 'Content-Type': 'application/merge-patch+json' },
      body: { mtu: 9000 },
    });
    assert.equal(p1.response.status, 200, JSON.stringify(p1.error));
    assert.equal(p1.data!.mtu, 9000);
    assert.equal(p1.data!.generation, '2');
    assert.notEqual(p1.data!.etag, created.etag);
    assert.equal(p1.response.headers.get('etag'), `"${p1.data!.etag}"`);
    assert.deepEqual(p1.data!.labels, { a: '1', b: '2' }, 'labels not named are kept');

    // Labels only: generation stays (it counts spec changes), etag moves.
    const p2 = unwrap(await nk.PATCH('/v1/bridges/{name}', { params: { path }, body: { labels: { a: null, c: '3' } } }));
    assert.deepEqual(p2.labels, { b: '2', c: '3' });
    assert.equal(p2.mtu, 9000);
    assert.notEqual(p2.etag, p1.data!.etag);

    const p3 = unwrap(
      await nk.PATCH('/v1/bridges/{name}', {
        params: { path },
        headers: { 'Content-Type': 'application/merge-patch+json' },
        body: { mtu: null, labels: null },
      }),
    );
    assert.equal(p3.mtu, 0);
    assert.deepEqual(p3.labels, {});

    // A patch that changes nothing writes nothing.
    const before = await snapshot(s);
    const p4 = unwrap(await nk.PATCH('/v1/bridges/{name}', { params: { path }, body: { mtu: 0, ifname: name } }));
    assert.equal(p4.etag, p3.etag);
    assert.deepEqual(await snapshot(s), before);
  });

  test('PATCH of an immutable field is 400 naming it; nothing stored', async () => {
    const cases: [string, unknown, string][] = [
      ['/v1/bridges/br-a', { ifname: 'other0' }, 'ifname'],
      ['/v1/bridges/br-a', { namespace: '' }, 'namespace'],
      ['/v1/bridges/br-a', { namespace: null }, 'namespace'],
      ['/v1/bridges/br-a', { name: 'renamed' }, 'name'],
      ['/v1/veths/veth-a', { a: { namespace: '' } }, 'a.namespace'],
      ['/v1/veths/veth-a', { b: { ifname: 'eth1' } }, 'b.ifname'],
      ['/v1/routes/rt-a', { destination: '10.61.0.0/16' }, 'destination'],
      ['/v1/routes/rt-a', { namespace: '' }, 'namespace'],
    ];
    for (const [url, patch, field] of cases) {
      await rejects(
        s,
        () => s.call('PATCH', url, { json: patch, contentType: 'application/merge-patch+json' }),
        { status: 400, code: 'INVALID_ARGUMENT', field },
        `${url} ${JSON.stringify(patch)}`,
      );
    }
  });

  test('PATCH of a missing resource is 404', async () => {
    await rejects(s, () => s.call('PATCH', '/v1/bridges/nope', { json: { mtu: 1500 } }), { status: 404, code: 'NOT_FOUND' });
  });

  test('If-Match: mismatch is 412 ABORTED and changes nothing; the ETag in any spelling matches', async () => {
    const name = 'br-etag';
    const br = unwrap(await nk.POST('/v1/bridges', { body: { name } }));
    const url = `/v1/bridges/${name}`;
    await rejects(s, () => s.call('PATCH', url, { json: { mtu: 1500 }, headers: { 'If-Match': '"stale"' } }), {
      status: 412,
      code: 'ABORTED',
    });
    await rejects(s, () => s.call('DELETE', url, { headers: { 'If-Match': '"stale"' } }), { status: 412, code: 'ABORTED' });

    let etag = br.etag;
    for (const spelling of [(e: string) => `"${e}"`, (e: string) => `W/"${e}"`, (e: string) => e, () => '*', (e: string) => `"old", "${e}"`]) {
      const r = await s.call('PATCH', url, { json: { mtu: 1000 + Math.floor(Math.random() * 8000) }, headers: { 'If-Match': spelling(etag) } });
      assert.equal(r.status, 200, `If-Match: ${spelling(etag)} → ${JSON.stringify(r.body)}`);
      assert.equal(r.headers.get('etag'), `"${r.body!.etag}"`);
      etag = r.body!.etag;
    }

    // The typed client passes If-Match as a header parameter.
    const typed = await nk.PATCH('/v1/bridges/{name}', {
      params: { path: { name }, header: { 'If-Match': 'nope' } },
      body: { mtu: 1500 },
    });
    assert.equal(problem(typed)?.code, 'ABORTED');

    // Conditional GET. (Not with fetch: the fetch standard adds `Cache-Control: no-cache`
    // to a request carrying If-None-Match, which makes every server answer in full.)
    const cached = await rawGet(s.socketPath, url, { 'If-None-Match': `"${etag}"` });
    assert.equal(cached.status, 304);
    assert.equal(cached.body, '');
    assert.equal(cached.headers.etag, `"${etag}"`);
    assert.equal((await rawGet(s.socketPath, url, { 'If-None-Match': '"old"' })).status, 200);
    const del = await s.call('DELETE', url, { headers: { 'If-Match': `"${etag}"` } });
    assert.equal(del.status, 204);
  });

  test('DELETE is 204, then the resource is 404, and deleting it again is 404', async () => {
    unwrap(await nk.POST('/v1/namespaces', { body: { name: 'ns-del' } }));
    const d = await nk.DELETE('/v1/namespaces/{name}', { params: { path: { name: 'ns-del' } } });
    assert.equal(d.response.status, 204);
    assert.equal(d.data, undefined);
    const g = await nk.GET('/v1/namespaces/{name}', { params: { path: { name: 'ns-del' } } });
    assert.equal(g.response.status, 404);
    assert.equal(problem(g)?.code, 'NOT_FOUND');
    await rejects(s, () => s.call('DELETE', '/v1/namespaces/ns-del'), { status: 404, code: 'NOT_FOUND' });
  });

  test('a duplicate name is 409 ALREADY_EXISTS naming `name`', async () => {
    await rejects(s, () => s.call('POST', '/v1/namespaces', { json: { name: 'ns-a' } }), {
      status: 409,
      code: 'ALREADY_EXISTS',
      field: 'name',
    });
  });

  test('deleting a namespace still in use is 409 FAILED_PRECONDITION naming the dependents', async () => {
    await rejects(s, () => s.call('DELETE', '/v1/namespaces/ns-a'), {
      status: 409,
      code: 'FAILED_PRECONDITION',
      detail: ['bridges/br-a', 'veths/veth-a', 'routes/rt-a'],
    });
    await rejects(s, () => s.call('DELETE', '/v1/bridges/br-a'), {
      status: 409,
      code: 'FAILED_PRECONDITION',
      detail: ['veths/veth-a'],
    });
  });

  test('validateOnly answers 200 with the would-be resource and stores nothing', async () => {
    const before = await snapshot(s);
    const changes = s.changes();
    const r = await nk.POST('/v1/bridges', { params: { query: { validateOnly: true } }, body: { name: 'br-dry', mtu: 1500 } });
    assert.equal(r.response.status, 200);
    assert.equal(r.data!.name, 'br-dry');
    assert.equal(r.data!.mtu, 1500);
    assert.equal(r.response.headers.get('etag'), null, 'no ETag for a resource that is not stored');
    assert.equal(r.response.headers.get('location'), null);

    const p = await nk.PATCH('/v1/bridges/{name}', { params: { path: { name: 'br-a' }, query: { validateOnly: true } }, body: { mtu: 1280 } });
    assert.equal(p.response.status, 200);
    assert.equal(p.data!.mtu, 1280);

    assert.deepEqual(await snapshot(s), before);
    assert.equal(s.changes(), changes);
    assert.equal((await s.call('GET', '/v1/bridges/br-dry')).status, 404);

    // validateOnly still reports what a real write would.
    await rejects(s, () => s.call('POST', '/v1/bridges?validateOnly=true', { json: { name: 'br-a' } }), {
      status: 409,
      code: 'ALREADY_EXISTS',
      field: 'name',
    });
    await rejects(s, () => s.call('POST', '/v1/bridges?validateOnly=yes', { json: { name: 'br-x' } }), {
      status: 400,
      code: 'INVALID_ARGUMENT',
      field: 'validateOnly',
    });
  });
});

describe('malformed requests', () => {
  const cases: { label: string; method?: string; url?: string; send: Parameters<Server['call']>[2]; want: Rejection }[] = [
    { label: 'malformed JSON', send: { raw: '{"name": "br-x",' }, want: { status: 400, code: 'INVALID_ARGUMENT', field: '' } },
    { label: 'JSON that is not an object', send: { json: ['br-x'] }, want: { status: 400, code: 'INVALID_ARGUMENT', field: '' } },
    { label: 'JSON scalar', send: { raw: '"br-x"' }, want: { status: 400, code: 'INVALID_ARGUMENT' } },
    { label: 'no body', send: {}, want: { status: 400, code: 'INVALID_ARGUMENT', field: '' } },
    { label: 'an empty JSON body', send: { raw: '', contentType: 'application/json' }, want: { status: 400, code: 'INVALID_ARGUMENT' } },
    { label: 'unknown field', send: { json: { name: 'br-x', colour: 'red' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'colour' } },
    { label: 'mtu as a string', send: { json: { name: 'br-x', mtu: '1500' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'mtu' } },
    { label: 'mtu fractional', send: { json: { name: 'br-x', mtu: 1500.5 } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'mtu' } },
    { label: 'vlanFiltering as a string', send: { json: { name: 'br-x', vlanFiltering: 'yes' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'vlanFiltering' } },
    { label: 'addresses as a string', send: { json: { name: 'br-x', addresses: '10.0.0.1/24' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'addresses' } },
    { label: 'an address as a number', send: { json: { name: 'br-x', addresses: ['10.0.0.1/24', 7] } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'addresses[1]' } },
    { label: 'namespace as a number', send: { json: { name: 'br-x', namespace: 5 } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'namespace' } },
    { label: 'name as null', send: { json: { name: null } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'name' } },
    { label: 'a label value that is not a string', send: { json: { name: 'br-x', labels: { k: 1 } } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'labels.k' } },
    { label: 'text/plain body', send: { raw: '{"name":"br-x"}', contentType: 'text/plain' }, want: { status: 415, code: 'INVALID_ARGUMENT' } },
    { label: 'merge-patch content type on POST', send: { json: { name: 'br-x' }, contentType: 'application/merge-patch+json' }, want: { status: 415, code: 'INVALID_ARGUMENT' } },
    { label: 'unknown field in a veth end', url: '/v1/veths', send: { json: { name: 'v-x', a: { ifname: 'x0', colour: 1 }, b: { ifname: 'x1' } } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'a.colour' } },
    { label: 'veth end missing', url: '/v1/veths', send: { json: { name: 'v-x', a: { ifname: 'x0' } } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'b' } },
    { label: 'PATCH with a wrong type', method: 'PATCH', url: '/v1/bridges/br-a', send: { json: { mtu: 'big' }, contentType: 'application/merge-patch+json' }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'mtu' } },
    { label: 'PATCH with an unknown field', method: 'PATCH', url: '/v1/bridges/br-a', send: { json: { colour: 'red' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'colour' } },
    { label: 'PATCH with malformed JSON', method: 'PATCH', url: '/v1/bridges/br-a', send: { raw: '{', contentType: 'application/merge-patch+json' }, want: { status: 400, code: 'INVALID_ARGUMENT', field: '' } },
    { label: 'PATCH with a veth end that is not an object', method: 'PATCH', url: '/v1/veths/veth-a', send: { json: { a: 'x' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'a' } },
    { label: 'a body above 1 MiB', send: { raw: JSON.stringify({ name: 'br-x', labels: { k: 'x'.repeat(1_100_000) } }) }, want: { status: 413, code: 'INVALID_ARGUMENT' } },
    { label: 'malformed percent-encoding in the name', method: 'GET', url: '/v1/bridges/%E0%A4%A', send: {}, want: { status: 400, code: 'INVALID_ARGUMENT' } },
    { label: 'unknown route', method: 'GET', url: '/v1/nope', send: {}, want: { status: 404, code: 'NOT_FOUND' } },
    { label: 'unknown route outside /v1', method: 'GET', url: '/metrics', send: {}, want: { status: 404, code: 'NOT_FOUND' } },
    { label: 'a gzip body that is not gzip', send: { raw: '{"name":"br-x"}', headers: { 'content-encoding': 'gzip' } }, want: { status: 400, code: 'INVALID_ARGUMENT' } },
    { label: 'If-Match that is no entity tag', method: 'PATCH', url: '/v1/bridges/br-a', send: { json: { mtu: 1400 }, headers: { 'if-match': ',,,' } }, want: { status: 400, code: 'INVALID_ARGUMENT', field: 'If-Match' } },
    { label: 'If-Match with an empty entity tag', method: 'PATCH', url: '/v1/bridges/br-a', send: { json: { mtu: 1400 }, headers: { 'if-match': '""' } }, want: { status: 412, code: 'ABORTED' } },
    { label: 'unsupported method', method: 'PUT', url: '/v1/bridges/br-a', send: { json: { mtu: 1 } }, want: { status: 405, code: 'UNIMPLEMENTED' } },
  ];
  for (const c of cases) {
    test(c.label, async () => {
      await rejects(s, () => s.call(c.method ?? 'POST', c.url ?? '/v1/bridges', c.send), c.want, c.label);
    });
  }

  test('schema and domain word the same rule the same way', async () => {
    const bySchema = await s.call('POST', '/v1/namespaces', { json: { name: 'Bad' } });
    const byDomain = await s.call('POST', '/v1/bridges', { json: { name: 'br-x', namespace: 'Bad' } });
    assert.equal(bySchema.body!.violations[0].description, byDomain.body!.violations[0].description);
  });

  test('violations spell fields as JSON paths', () => {
    const body = { a: { addresses: ['x', 'y'] }, labels: { '0': 'x', 'app.io/name': 'y' } };
    assert.equal(fieldFromPointer('/body/a/addresses/1', body), 'a.addresses[1]');
    assert.equal(fieldFromPointer('/body/labels/0', body), 'labels.0');
    assert.equal(fieldFromPointer('/body/labels/app.io~1name', body), 'labels.app.io/name');
    assert.equal(fieldFromPointer('/body', body), '');
    assert.equal(fieldFromPointer('/query/pageSize', body), 'pageSize');
    assert.equal(fieldFromPointer('/headers/if-match', body), 'If-Match');
    assert.equal(fieldFromPointer('/v1/bridges/x', body), undefined);
  });

  test('If-Match parsing', () => {
    const current = () => 'e2';
    assert.equal(etagFromIfMatch(undefined, current), undefined);
    assert.equal(etagFromIfMatch('*', current), undefined);
    assert.equal(etagFromIfMatch('"e1"', current), 'e1');
    assert.equal(etagFromIfMatch('W/"e1"', current), 'e1');
    assert.equal(etagFromIfMatch('e1', current), 'e1');
    assert.equal(etagFromIfMatch('"e1", "e2"', current), 'e2');
    assert.equal(etagFromIfMatch('"e1", "e3"', current), 'e1');
  });
});

describe('presenter', () => {
  test('lastReconcileTime appears once reconciled; int64 fields are strings', () => {
    const services = createServices(openStore(':memory:'), { onChange() {}, ready: () => true });
    const br = services.bridges.create({ name: 'p0' });
    br.generation = 7;
    br.status = { ...br.status, state: 'READY', observedGeneration: 7, lastReconcileTime: '2025-01-02T03:04:05.678Z', ifindex: 12, mac: br.spec.mac };
    const json = presentResource(br);
    assert.equal(json.generation, '7');
    assert.deepEqual(json.status, { state: 'READY', message: '', observedGeneration: '7', lastReconcileTime: '2025-01-02T03:04:05.678Z', ifindex: 12, mac: br.spec.mac, poolAddresses: [] });
    assertMatchesSchema('Bridge', { $ref: '#/components/schemas/Bridge' }, json);
  });
});

/** One bad request, by the rule it breaks. */
interface BadInput {
  rule: string;
  kind: Kind;
  body: Json;
  want: Rejection;
}

const invalid = (field: string): Rejection => ({ status: 400, code: 'INVALID_ARGUMENT', field });
const bridge = (extra: Json): Json => ({ name: 'bad-br', namespace: 'tns', ...extra });
const veth = (a: Json, b: Json = { ifname: 'bad-b', namespace: 'tns' }, extra: Json = {}): Json => ({
  name: 'bad-veth',
  a: { ifname: 'bad-a', namespace: 'tns', ...a },
  b,
  ...extra,
});
const route = (extra: Json): Json => ({ name: 'bad-route', namespace: 'tns', destination: '10.70.0.0/16', via: '10.1.0.254', ...extra });

const BAD_INPUTS: BadInput[] = [
  // Resource names (RFC 1123 label, DESIGN.md §2).
  { rule: 'name with uppercase', kind: 'namespaces', body: { name: 'Bad' }, want: invalid('name') },
  { rule: 'name starting with "-"', kind: 'namespaces', body: { name: '-bad' }, want: invalid('name') },
  { rule: 'name ending with "-"', kind: 'namespaces', body: { name: 'bad-' }, want: invalid('name') },
  { rule: 'name of 64 characters', kind: 'namespaces', body: { name: 'a'.repeat(64) }, want: invalid('name') },
  { rule: 'name with "_"', kind: 'namespaces', body: { name: 'a_b' }, want: invalid('name') },
  { rule: 'name empty', kind: 'namespaces', body: { name: '' }, want: invalid('name') },
  { rule: 'name missing', kind: 'namespaces', body: {}, want: invalid('name') },
  { rule: 'namespace reference not a name', kind: 'bridges', body: bridge({ namespace: 'Bad' }), want: invalid('namespace') },
  { rule: 'veth bridge reference not a name', kind: 'veths', body: veth({ bridge: 'Bad_br' }), want: invalid('a.bridge') },
  // Labels.
  { rule: 'label key starting with "-"', kind: 'namespaces', body: { name: 'bad-ns', labels: { '-x': '1' } }, want: invalid('labels.-x') },
  { rule: 'label key of 64 characters', kind: 'namespaces', body: { name: 'bad-ns', labels: { ['k'.repeat(64)]: '1' } }, want: invalid(`labels.${'k'.repeat(64)}`) },
  { rule: 'label value of 257 characters', kind: 'namespaces', body: { name: 'bad-ns', labels: { k: 'v'.repeat(257) } }, want: invalid('labels.k') },
  // Interface names (dev_valid_name()).
  { rule: 'ifname of 16 bytes', kind: 'bridges', body: bridge({ ifname: 'abcdefghijklmnop' }), want: invalid('ifname') },
  { rule: 'ifname of 8 characters but 16 bytes', kind: 'bridges', body: bridge({ ifname: 'é'.repeat(8) }), want: invalid('ifname') },
  { rule: 'ifname "."', kind: 'bridges', body: bridge({ ifname: '.' }), want: invalid('ifname') },
  { rule: 'ifname ".."', kind: 'bridges', body: bridge({ ifname: '..' }), want: invalid('ifname') },
  { rule: 'ifname with "/"', kind: 'bridges', body: bridge({ ifname: 'a/b' }), want: invalid('ifname') },
  { rule: 'ifname with ":"', kind: 'bridges', body: bridge({ ifname: 'a:b' }), want: invalid('ifname') },
  { rule: 'ifname with a space', kind: 'bridges', body: bridge({ ifname: 'a b' }), want: invalid('ifname') },
  { rule: 'ifname with a tab', kind: 'bridges', body: bridge({ ifname: 'a\tb' }), want: invalid('ifname') },
  { rule: 'ifname with a control character', kind: 'bridges', body: bridge({ ifname: 'a\u0001b' }), want: invalid('ifname') },
  { rule: 'default ifname from a 16-byte name', kind: 'bridges', body: { name: 'abcdefghijklmnop' }, want: invalid('ifname') },
  { rule: 'veth end without ifname', kind: 'veths', body: veth({ ifname: undefined }), want: invalid('a.ifname') },
  { rule: 'veth end ifname ".."', kind: 'veths', body: veth({}, { ifname: '..' }), want: invalid('b.ifname') },
  { rule: 'veth end ifname of 16 bytes', kind: 'veths', body: veth({ ifname: 'veth0123456789ab' }), want: invalid('a.ifname') },
  { rule: 'route device with a space', kind: 'routes', body: route({ device: 'a b' }), want: invalid('device') },
  { rule: 'ifname with "#" (ip -batch cannot carry it)', kind: 'bridges', body: bridge({ ifname: 'br#1' }), want: invalid('ifname') },
  { rule: 'ifname with a quote', kind: 'bridges', body: bridge({ ifname: 'br"1' }), want: invalid('ifname') },
  { rule: 'ifname with a backslash', kind: 'bridges', body: bridge({ ifname: 'br\\1' }), want: invalid('ifname') },
  { rule: 'route device with "#"', kind: 'routes', body: route({ device: 'x#y' }), want: invalid('device') },
  { rule: 'bridge ifname lo', kind: 'bridges', body: bridge({ ifname: 'lo' }), want: invalid('ifname') },
  { rule: 'veth end ifname lo', kind: 'veths', body: veth({}, { ifname: 'lo', namespace: 'tns' }), want: invalid('b.ifname') },
  // MTU.
  { rule: 'MTU 67', kind: 'bridges', body: bridge({ mtu: 67 }), want: invalid('mtu') },
  { rule: 'MTU 65536', kind: 'bridges', body: bridge({ mtu: 65536 }), want: invalid('mtu') },
  { rule: 'MTU negative', kind: 'bridges', body: bridge({ mtu: -1 }), want: invalid('mtu') },
  { rule: 'veth MTU 67', kind: 'veths', body: veth({}, undefined, { mtu: 67 }), want: invalid('mtu') },
  // MAC (eth_validate_addr()).
  { rule: 'MAC multicast', kind: 'bridges', body: bridge({ mac: '01:00:5e:00:00:01' }), want: invalid('mac') },
  { rule: 'MAC broadcast', kind: 'bridges', body: bridge({ mac: 'ff:ff:ff:ff:ff:ff' }), want: invalid('mac') },
  { rule: 'MAC all zeros', kind: 'bridges', body: bridge({ mac: '00:00:00:00:00:00' }), want: invalid('mac') },
  { rule: 'MAC of five octets', kind: 'bridges', body: bridge({ mac: '02:00:00:00:00' }), want: invalid('mac') },
  { rule: 'MAC with dashes', kind: 'bridges', body: bridge({ mac: '02-00-00-00-00-01' }), want: invalid('mac') },
  { rule: 'MAC with a non-hex digit', kind: 'bridges', body: bridge({ mac: '02:00:00:00:00:0g' }), want: invalid('mac') },
  { rule: 'veth end MAC multicast', kind: 'veths', body: veth({ mac: '03:00:00:00:00:01' }), want: invalid('a.mac') },
  // Interface addresses (strict CIDR).
  ...[' 10.0.0.1/24', '10.0.0.1/24 ', '10.0.0.256/24', '10.0.0.1/33', '10.0.0.1', 'fd00::1/129', '10.0.0.01/24', '10.0.0.1/024', '10.0.0.1/-1', 'fe80::1%eth0/64', '10.0.0.1/24/8', 'x', ''].map(
    (a): BadInput => ({ rule: `address ${JSON.stringify(a)}`, kind: 'bridges', body: bridge({ addresses: [a] }), want: invalid('addresses[0]') }),
  ),
  { rule: 'second address bad', kind: 'bridges', body: bridge({ addresses: ['10.2.0.1/24', '10.2.0.300/24'] }), want: invalid('addresses[1]') },
  { rule: 'address listed twice', kind: 'bridges', body: bridge({ addresses: ['10.2.0.1/24', '10.2.0.1/16'] }), want: invalid('addresses[1]') },
  { rule: 'veth end address bad', kind: 'veths', body: veth({ addresses: ['10.2.0.1/24', 'fd00::1/129'] }), want: invalid('a.addresses[1]') },
  // Routes.
  { rule: 'route destination with host bits set', kind: 'routes', body: route({ destination: '10.70.0.1/16' }), want: invalid('destination') },
  { rule: 'route IPv6 destination with host bits set', kind: 'routes', body: route({ destination: 'fd00:70::1/64', via: 'fd00::1' }), want: invalid('destination') },
  { rule: 'route destination without prefix', kind: 'routes', body: route({ destination: '10.70.0.0' }), want: invalid('destination') },
  { rule: 'route destination empty', kind: 'routes', body: route({ destination: '' }), want: invalid('destination') },
  { rule: 'route destination missing', kind: 'routes', body: { name: 'bad-route', via: '10.1.0.254' }, want: invalid('destination') },
  { rule: 'route via not an address', kind: 'routes', body: route({ via: 'gateway' }), want: invalid('via') },
  { rule: 'route via of the other family', kind: 'routes', body: route({ destination: 'fd00:70::/64', via: '10.1.0.254' }), want: invalid('via') },
  { rule: 'route with neither via nor device', kind: 'routes', body: route({ via: '' }), want: invalid('via') },
  { rule: 'route metric negative', kind: 'routes', body: route({ metric: -1 }), want: invalid('metric') },
  { rule: 'route metric above uint32', kind: 'routes', body: route({ metric: 4294967296 }), want: invalid('metric') },
  // Veth pairs.
  { rule: 'both ends named the same in one namespace', kind: 'veths', body: veth({ ifname: 'same0' }, { ifname: 'same0', namespace: 'tns' }), want: invalid('b.ifname') },
  { rule: 'one address on both ends of a pair', kind: 'veths', body: veth({ addresses: ['10.9.0.1/24'] }, { ifname: 'bad-b', namespace: 'tns', addresses: ['10.9.0.1/24'] }), want: invalid('b.addresses[0]') },
  // References.
  { rule: 'namespace that does not exist', kind: 'bridges', body: bridge({ namespace: 'ghost' }), want: { status: 404, code: 'NOT_FOUND', field: 'namespace' } },
  { rule: 'route in a namespace that does not exist', kind: 'routes', body: route({ namespace: 'ghost' }), want: { status: 404, code: 'NOT_FOUND', field: 'namespace' } },
  { rule: 'veth end in a namespace that does not exist', kind: 'veths', body: veth({ namespace: 'ghost' }), want: { status: 404, code: 'NOT_FOUND', field: 'a.namespace' } },
  { rule: 'veth end on a bridge that does not exist', kind: 'veths', body: veth({ bridge: 'ghost' }), want: { status: 404, code: 'NOT_FOUND', field: 'a.bridge' } },
  { rule: 'veth end on a bridge in another namespace', kind: 'veths', body: veth({ bridge: 'tbr2' }), want: invalid('a.bridge') },
  { rule: 'veth end b on a bridge in another namespace', kind: 'veths', body: veth({}, { ifname: 'bad-b', namespace: '', bridge: 'tbr' }), want: invalid('b.bridge') },
  // Uniqueness.
  { rule: 'name taken', kind: 'bridges', body: bridge({ name: 'tbr', ifname: 'other0' }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'name' } },
  { rule: 'bridge ifname taken in the namespace', kind: 'bridges', body: bridge({ ifname: 'tbr0' }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'ifname' } },
  { rule: 'veth ifname taken in the namespace', kind: 'veths', body: veth({ ifname: 'tbr0' }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'a.ifname' } },
  { rule: 'veth ifname taken by another veth', kind: 'veths', body: veth({}, { ifname: 'tv-b', namespace: 'tns' }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'b.ifname' } },
  { rule: 'address taken in the namespace', kind: 'bridges', body: bridge({ addresses: ['10.1.0.1/16'] }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'addresses[0]' } },
  { rule: 'address taken on the bridge segment', kind: 'veths', body: veth({ bridge: 'tbr', addresses: ['10.1.0.1/24'] }), want: { status: 409, code: 'ALREADY_EXISTS', field: 'a.addresses[0]' } },
];

describe('bad input is rejected naming the field, and stores nothing', () => {
  before(async () => {
    for (const name of ['tns', 'tns2']) unwrap(await nk.POST('/v1/namespaces', { body: { name } }));
    unwrap(await nk.POST('/v1/bridges', { body: { name: 'tbr', namespace: 'tns', ifname: 'tbr0', addresses: ['10.1.0.1/24'] } }));
    unwrap(await nk.POST('/v1/bridges', { body: { name: 'tbr2', namespace: 'tns2' } }));
    unwrap(await nk.POST('/v1/veths', { body: { name: 'tv', a: { ifname: 'tv-a', namespace: 'tns' }, b: { ifname: 'tv-b', namespace: 'tns' } } }));
    // The fixtures themselves are valid: the good form of every case's kind is accepted.
    const ok = await s.call('POST', '/v1/veths?validateOnly=true', { json: veth({ bridge: 'tbr' }) });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const okRoute = await s.call('POST', '/v1/routes?validateOnly=true', { json: route({}) });
    assert.equal(okRoute.status, 200, JSON.stringify(okRoute.body));
    const okBridge = await s.call('POST', '/v1/bridges?validateOnly=true', { json: bridge({}) });
    assert.equal(okBridge.status, 200, JSON.stringify(okBridge.body));
  });

  for (const c of BAD_INPUTS) {
    test(c.rule, async () => {
      await rejects(s, () => s.call('POST', `/v1/${c.kind}`, { json: c.body }), c.want, c.rule);
      await rejects(s, () => s.call('POST', `/v1/${c.kind}?validateOnly=true`, { json: c.body }), c.want, `${c.rule} (validateOnly)`);
    });
  }

  test('the same rules hold for PATCH', async () => {
    const patches: [string, Json, Rejection][] = [
      ['/v1/bridges/tbr', { mtu: 67 }, invalid('mtu')],
      ['/v1/bridges/tbr', { mac: '01:00:00:00:00:01' }, invalid('mac')],
      ['/v1/bridges/tbr', { addresses: ['10.0.0.1/33'] }, invalid('addresses[0]')],
      ['/v1/bridges/tbr', { labels: { '-x': 'y' } }, invalid('labels.-x')],
      ['/v1/veths/tv', { a: { bridge: 'tbr2' } }, invalid('a.bridge')],
      ['/v1/veths/tv', { b: { bridge: 'ghost' } }, { status: 404, code: 'NOT_FOUND', field: 'b.bridge' }],
      ['/v1/veths/tv', { a: { addresses: ['10.1.0.1/24'] } }, { status: 409, code: 'ALREADY_EXISTS', field: 'a.addresses[0]' }],
      ['/v1/veths/tv', { a: null }, invalid('a.ifname')],
    ];
    for (const [url, patch, want] of patches) {
      await rejects(s, () => s.call('PATCH', url, { json: patch, contentType: 'application/merge-patch+json' }), want, `${url} ${JSON.stringify(patch)}`);
    }
  });
});

describe('load balancers: bad input is 400 naming the field, and nothing is stored', () => {
  const lb = (over: Record<string, unknown>) => ({ name: 'lb-bad', vip: '10.96.0.10', ports: [{ port: 80 }], ...over });
  const cases: [string, Record<string, unknown>, string][] = [
    ['port 0', lb({ ports: [{ port: 0 }] }), 'ports[0].port'],
    ['port 65536', lb({ ports: [{ port: 65536 }] }), 'ports[0].port'],
    ['targetPort 65536', lb({ ports: [{ port: 80, targetPort: 65536 }] }), 'ports[0].targetPort'],
    ['unknown protocol', lb({ ports: [{ port: 80, protocol: 'ICMP' }] }), 'ports[0].protocol'],
    ['no ports', lb({ ports: [] }), 'ports'],
    ['VIP not an address', lb({ vip: '10.96.0.300' }), 'vip'],
    ['VIP a network', lb({ vip: '10.96.0.0/24' }), 'vip'],
    ['neither vip nor vipPool', lb({ vip: '' }), 'vip'],
    ['weight 101', lb({ backends: [{ address: '10.50.0.2', weight: 101 }] }), 'backends[0].weight'],
    ['weight -1', lb({ backends: [{ address: '10.50.0.2', weight: -1 }] }), 'backends[0].weight'],
    ['duplicate port/protocol', lb({ ports: [{ port: 80 }, { port: 80, protocol: 'TCP' }] }), 'ports[1].port'],
    ['backend of the other family', lb({ backends: [{ address: 'fd00::2' }] }), 'backends[0].address'],
    ['backend not an address', lb({ backends: [{ address: 'web-1' }] }), 'backends[0].address'],
    ['duplicate backend', lb({ backends: [{ address: '10.50.0.2' }, { address: '10.50.0.2' }] }), 'backends[1].address'],
    ['affinity timeout too long', lb({ sessionAffinity: { clientIp: { timeoutSeconds: 86401 } } }), 'sessionAffinity.clientIp.timeoutSeconds'],
    ['source range with host bits', lb({ sourceRanges: ['10.50.0.1/24'] }), 'sourceRanges[0]'],
    ['unknown algorithm', lb({ algorithm: 'LEAST_CONN' }), 'algorithm'],
    ['loopback VIP', lb({ vip: '127.0.0.1' }), 'vip'],
    ['unspecified VIP', lb({ vip: '0.0.0.0' }), 'vip'],
    ['unspecified IPv6 VIP', lb({ vip: '::' }), 'vip'],
    ['limited broadcast VIP', lb({ vip: '255.255.255.255' }), 'vip'],
    ['multicast VIP', lb({ vip: '224.0.0.1' }), 'vip'],
    ['IPv6 multicast VIP', lb({ vip: 'ff02::1' }), 'vip'],
    ['link-local IPv6 backend', lb({ vip: 'fd00:96::10', backends: [{ address: 'fe80::1' }] }), 'backends[0].address'],
    ['loopback backend', lb({ backends: [{ address: '127.0.0.2' }] }), 'backends[0].address'],
    ['IPv6 loopback backend', lb({ vip: 'fd00:96::10', backends: [{ address: '::1' }] }), 'backends[0].address'],
    ['backend that is the VIP', lb({ backends: [{ address: '10.96.0.10' }] }), 'backends[0].address'],
    [
      'two backends that are one endpoint for a port',
      lb({ ports: [{ port: 80, targetPort: 8080 }], backends: [{ address: '10.50.0.2' }, { address: '10.50.0.2', port: 8080 }] }),
      'backends[1].port',
    ],
  ];
  for (const [rule, body, field] of cases) {
    test(rule, async () => {
      for (const validateOnly of [false, true]) {
        const q = validateOnly ? ' (validateOnly)' : '';
        const r = await nk.POST('/v1/loadbalancers', { params: { query: { validateOnly } }, body: body as never });
        assert.equal(r.response.status, 400, `${rule}${q}: ${JSON.stringify(r.error)}`);
        assert.equal(r.error?.code, 'INVALID_ARGUMENT');
        assert.ok(r.error?.violations.some((v) => v.field === field), `${rule}: ${JSON.stringify(r.error?.violations)}`);
      }
      assert.equal((await nk.GET('/v1/loadbalancers/{name}', { params: { path: { name: 'lb-bad' } } })).response.status, 404);
    });
  }

  test('a valid load balancer round-trips, and its response matches the schema', async () => {
    const r = await nk.POST('/v1/loadbalancers', {
      body: { name: 'lb-ok', vip: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }], backends: [{ address: '10.50.0.2', weight: 5 }], sessionAffinity: { clientIp: {} } },
    });
    assert.equal(r.response.status, 201, JSON.stringify(r.error));
    assert.deepEqual(r.data!.sessionAffinity, { clientIp: { timeoutSeconds: 10800 } });
    assert.deepEqual(r.data!.backends, [{ address: '10.50.0.2', port: 0, weight: 5 }]);
    assert.equal(r.data!.status.vip, '10.96.0.10');
    assert.equal((await nk.DELETE('/v1/loadbalancers/{name}', { params: { path: { name: 'lb-ok' } } })).response.status, 204);
  });

  test('weight 0 and timeoutSeconds 0 mean the defaults, as an unset proto3 field does over gRPC', async () => {
    const r = await nk.POST('/v1/loadbalancers', {
      body: { name: 'lb-zero', vip: '10.96.0.10', ports: [{ port: 80 }], backends: [{ address: '10.50.0.2', weight: 0 }], sessionAffinity: { clientIp: { timeoutSeconds: 0 } } },
    });
    assert.equal(r.response.status, 201, JSON.stringify(r.error));
    assert.equal(r.data!.backends[0]!.weight, 1);
    assert.equal(r.data!.sessionAffinity.clientIp?.timeoutSeconds, 10800);
    assert.equal((await nk.DELETE('/v1/loadbalancers/{name}', { params: { path: { name: 'lb-zero' } } })).response.status, 204);
  });

  test('a static VIP that is a pool\'s gateway is refused, naming vip, and nothing is stored', async () => {
    assert.equal((await nk.POST('/v1/pools', { body: { name: 'gwpool', cidr: '10.99.0.0/24', gateway: '10.99.0.1' } })).response.status, 201);
    const r = await nk.POST('/v1/loadbalancers', { body: { name: 'lb-gw', vip: '10.99.0.1', ports: [{ port: 80 }] } });
    assert.equal(r.response.status, 409, JSON.stringify(r.error));
    assert.match(r.error!.detail, /^vip: 10\.99\.0\.1 is the gateway of pools\/gwpool/);
    assert.equal((await nk.GET('/v1/loadbalancers/{name}', { params: { path: { name: 'lb-gw' } } })).response.status, 404);
    const pool = await nk.POST('/v1/loadbalancers', { body: { name: 'lb-gw', vipPool: 'gwpool', ports: [{ port: 80 }] } });
    assert.equal(pool.response.status, 201);
    const del = await nk.DELETE('/v1/pools/{name}', { params: { path: { name: 'gwpool' } } });
    assert.equal(del.response.status, 409);
    assert.match(del.error!.detail, /is still used by loadbalancers\/lb-gw \(vipPool\)/);
    assert.equal((await nk.DELETE('/v1/loadbalancers/{name}', { params: { path: { name: 'lb-gw' } } })).response.status, 204);
    assert.equal((await nk.DELETE('/v1/pools/{name}', { params: { path: { name: 'gwpool' } } })).response.status, 204);
  });
});
