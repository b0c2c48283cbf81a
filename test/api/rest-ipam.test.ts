/**
 * IPAM over REST (issue 3): `/v1/pools` and `/v1/pools/{pool}/allocations`
 * end to end, with the express app on a unix socket in a temp dir over a
 * real store and services, driven with the typed client and with plain
 * fetch. Every response is checked against the OpenAPI document, and every
 * rejected request is checked to have stored nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { createNetkeepClient, unwrap, type NetkeepClient } from '../../clients/netkeep-client.js';
import { createRestApp, listenRest } from '../../src/api/rest/app.js';
import { createServices } from '../../src/service/index.js';
import { openStore } from '../../src/store/index.js';
import { checkResponse, validateResponses } from '../support/openapi.js';

type Json = Record<string, any>;

interface Answer {
  status: number;
  headers: Headers;
  body: Json | undefined;
}

/** A daemon-like REST server over a fresh in-memory store. */
async function startServer(dir: string) {
  const store = openStore(':memory:');
  let changes = 0;
  const svc = createServices(store, {
    onChange: () => {
      changes++;
    },
    ready: () => true,
  });
  const socketPath = path.join(dir, 'rest.sock');
  const server = await listenRest(createRestApp(svc, pino({ level: 'silent' })), `unix:${socketPath}`);
  const agent = new Agent({ connect: { socketPath } });

  /** Plain fetch over the socket; the answer is checked against the OpenAPI document. */
  async function call(
    method: string,
    urlPath: string,
    opts: { json?: unknown; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    const res = await undiciFetch(`http://localhost${urlPath}`, { method, headers, body, dispatcher: agent });
    const parsed = (await checkResponse(method, urlPath, res as unknown as Response)) as Json | undefined;
    return { status: res.status, headers: res.headers as unknown as Headers, body: parsed };
  }

  const client = createNetkeepClient({ socketPath });
  client.use(validateResponses);

  return {
    client,
    call,
    changes: () => changes,
    async close() {
      await client.close();
      await agent.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Server = Awaited<ReturnType<typeof startServer>>;

/** Every pool and every allocation, as the API shows them. */
async function snapshot(s: Server): Promise<Json> {
  const pools = await s.call('GET', '/v1/pools?pageSize=1000');
  assert.equal(pools.status, 200);
  assert.equal(pools.body!.nextPageToken, '');
  const allocations: Json = {};
  for (const p of pools.body!.items as Json[]) {
    const a = await s.call('GET', `/v1/pools/${p.name}/allocations?pageSize=1000`);
    assert.equal(a.status, 200);
    allocations[p.name] = a.body!.items;
  }
  return { pools: pools.body!.items, allocations };
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

const invalid = (field: string): Rejection => ({ status: 400, code: 'INVALID_ARGUMENT', field });

let dir: string;
let s: Server;
let nk: NetkeepClient;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'netkeep-rest-ipam-'));
  s = await startServer(dir);
  nk = s.client;
});

after(async () => {
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

async function allocate(pool: string, body: Json = {}): Promise<Answer> {
  return s.call('POST', `/v1/pools/${pool}/allocations`, { json: body });
}

describe('pools', () => {
  test('create, get, list, patch, delete', async () => {
    const created = await nk.POST('/v1/pools', {
      body: {
        name: 'p-crud',
        labels: { team: 'net' },
        cidr: '10.20.0.0/24',
        gateway: '10.20.0.1',
        reserved: ['10.20.0.10', { start: '10.20.0.200', end: '10.20.0.209' }],
      },
    });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));
    const p = created.data!;
    assert.equal(created.response.headers.get('location'), '/v1/pools/p-crud');
    assert.equal(created.response.headers.get('etag'), `"${p.etag}"`);
    assert.equal(p.generation, '1');
    assert.deepEqual(p.ranges, []);
    assert.deepEqual(p.reserved, ['10.20.0.10', { start: '10.20.0.200', end: '10.20.0.209' }]);
    // 254 host addresses, minus the gateway and 11 reserved.
    assert.deepEqual(p.status, { state: 'READY', message: '', observedGeneration: '1', total: '242', allocated: '0', free: '242' });

    const got = await nk.GET('/v1/pools/{name}', { params: { path: { name: 'p-crud' } } });
    assert.equal(got.response.status, 200);
    assert.deepEqual(got.data, p);
    assert.equal(got.response.headers.get('etag'), `"${p.etag}"`);

    const ranged = unwrap(
      await nk.POST('/v1/pools', { body: { name: 'p-crud6', cidr: 'FD00:20:0::/120', ranges: [{ start: 'fd00:20::10', end: 'fd00:20::1f' }] } }),
    );
    assert.equal(ranged.cidr, 'fd00:20::/120');
    assert.equal(ranged.status.total, '16');

    const list = unwrap(await nk.GET('/v1/pools', { params: { query: { pageSize: 1 } } }));
    assert.equal(list.items.length, 1);
    assert.notEqual(list.nextPageToken, '');
    const rest = unwrap(await nk.GET('/v1/pools', { params: { query: { pageSize: 1000 } } }));
    assert.deepEqual(rest.items.map((x) => x.name).filter((n) => n.startsWith('p-crud')), ['p-crud', 'p-crud6']);

    const patched = await nk.PATCH('/v1/pools/{name}', {
      params: { path: { name: 'p-crud' }, header: { 'If-Match': `"${p.etag}"` } },
      headers: { 'Content-Type': 'application/merge-patch+json' },
      body: { gateway: '10.20.0.254', reserved: null, labels: { team: null } },
    });
    assert.equal(patched.response.status, 200, JSON.stringify(patched.error));
    assert.equal(patched.data!.gateway, '10.20.0.254');
    assert.deepEqual(patched.data!.reserved, []);
    assert.deepEqual(patched.data!.labels, {});
    assert.equal(patched.data!.generation, '2');
    assert.equal(patched.data!.status.total, '253');
    assert.equal(patched.response.headers.get('etag'), `"${patched.data!.etag}"`);

    await rejects(s, () => s.call('PATCH', '/v1/pools/p-crud', { json: { gateway: '' }, headers: { 'If-Match': `"${p.etag}"` } }), {
      status: 412,
      code: 'ABORTED',
    });
    await rejects(s, () => s.call('PATCH', '/v1/pools/p-crud', { json: { cidr: '10.20.0.0/23' } }), invalid('cidr'));
    await rejects(s, () => s.call('PATCH', '/v1/pools/p-crud', { json: { gateway: '10.99.0.1' } }), invalid('gateway'));
    await rejects(s, () => s.call('PATCH', '/v1/pools/nope', { json: { gateway: '' } }), { status: 404, code: 'NOT_FOUND' });

    const dry = await s.call('PATCH', '/v1/pools/p-crud?validateOnly=true', { json: { gateway: '10.20.0.2' } });
    assert.equal(dry.status, 200);
    assert.equal(dry.body!.gateway, '10.20.0.2');
    assert.equal(dry.headers.get('etag'), null);
    assert.equal(unwrap(await nk.GET('/v1/pools/{name}', { params: { path: { name: 'p-crud' } } })).gateway, '10.20.0.254');

    await rejects(s, () => s.call('DELETE', '/v1/pools/p-crud', { headers: { 'If-Match': '"stale"' } }), { status: 412, code: 'ABORTED' });
    for (const name of ['p-crud', 'p-crud6']) {
      assert.equal((await s.call('DELETE', `/v1/pools/${name}`)).status, 204);
      assertRejected(await s.call('GET', `/v1/pools/${name}`), { status: 404, code: 'NOT_FOUND' });
    }
    assertRejected(await s.call('DELETE', '/v1/pools/p-crud'), { status: 404, code: 'NOT_FOUND' });
  });

  test('validateOnly create answers 200 and stores nothing', async () => {
    const before = await snapshot(s);
    const r = await s.call('POST', '/v1/pools?validateOnly=true', { json: { name: 'p-dry', cidr: '10.21.0.0/24' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body!.name, 'p-dry');
    assert.equal(r.headers.get('etag'), null);
    assert.equal(r.headers.get('location'), null);
    assert.deepEqual(await snapshot(s), before);
  });

  test('overlapping pools are 409 ALREADY_EXISTS naming cidr, v4 and v6', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-wide', cidr: '10.30.0.0/16' } }));
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-wide6', cidr: 'fd00:30::/48' } }));
    const overlapping: [string, string][] = [
      ['10.30.5.0/24', 'inside'],
      ['10.0.0.0/8', 'around'],
      ['10.30.0.0/16', 'equal'],
      ['fd00:30:0:7::/64', 'inside v6'],
      ['fd00::/16', 'around v6'],
    ];
    for (const [cidr, label] of overlapping) {
      await rejects(
        s,
        () => s.call('POST', '/v1/pools', { json: { name: 'p-overlap', cidr } }),
        { status: 409, code: 'ALREADY_EXISTS', field: 'cidr', detail: ['overlaps'] },
        label,
      );
    }
    // Adjacent networks do not overlap.
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-next', cidr: '10.31.0.0/16' } }));
    await rejects(s, () => s.call('POST', '/v1/pools', { json: { name: 'p-wide', cidr: '10.99.0.0/16' } }), {
      status: 409,
      code: 'ALREADY_EXISTS',
      field: 'name',
    });
  });
});

describe('allocations', () => {
  test('next-free in a /30 hands out .1 then .2, then RESOURCE_EXHAUSTED', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p30', cidr: '10.40.0.0/30' } }));
    const first = await nk.POST('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p30' } }, body: { owner: 'a' } });
    assert.equal(first.response.status, 201, JSON.stringify(first.error));
    assert.equal(first.data!.address, '10.40.0.1');
    assert.equal(first.response.headers.get('location'), '/v1/pools/p30/allocations/10.40.0.1');
    assert.deepEqual(Object.keys(first.data!).sort(), ['address', 'createTime', 'labels', 'owner', 'pool']);
    assert.equal(first.data!.pool, 'p30');

    const second = await allocate('p30', { labels: { x: 'y' } });
    assert.equal(second.status, 201);
    assert.equal(second.body!.address, '10.40.0.2');
    assert.equal(second.body!.owner, '');
    assert.deepEqual(second.body!.labels, { x: 'y' });

    await rejects(s, () => allocate('p30'), { status: 409, code: 'RESOURCE_EXHAUSTED', detail: ['no free address'] });
    await rejects(s, () => s.call('POST', '/v1/pools/p30/allocations?validateOnly=true', { json: {} }), {
      status: 409,
      code: 'RESOURCE_EXHAUSTED',
    });
    const pool = unwrap(await nk.GET('/v1/pools/{name}', { params: { path: { name: 'p30' } } }));
    assert.deepEqual([pool.status.total, pool.status.allocated, pool.status.free], ['2', '2', '0']);
  });

  test('explicit address: taken, gateway, reserved, outside, not a host address', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-ex', cidr: '10.41.0.0/24', gateway: '10.41.0.1', reserved: ['10.41.0.9'] } }));
    const a = await allocate('p-ex', { address: '10.41.0.5', owner: 'veths/web/b' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    assert.equal(a.body!.address, '10.41.0.5');
    assert.equal(a.body!.owner, 'veths/web/b');

    await rejects(s, () => allocate('p-ex', { address: '10.41.0.5' }), { status: 409, code: 'ALREADY_EXISTS', field: 'address', detail: ['veths/web/b'] });
    await rejects(s, () => allocate('p-ex', { address: '10.41.0.1' }), { status: 409, code: 'FAILED_PRECONDITION', field: 'address', detail: ['gateway'] });
    await rejects(s, () => allocate('p-ex', { address: '10.41.0.9' }), { status: 409, code: 'FAILED_PRECONDITION', field: 'address', detail: ['reserved'] });
    await rejects(s, () => allocate('p-ex', { address: '10.42.0.1' }), { ...invalid('address'), detail: ['outside'] });
    await rejects(s, () => allocate('p-ex', { address: '10.41.0.255' }), { ...invalid('address'), detail: ['broadcast'] });
    await rejects(s, () => allocate('p-ex', { address: '10.41.0.0' }), { ...invalid('address'), detail: ['network'] });
    await rejects(s, () => allocate('p-ex', { address: 'fd00::1' }), invalid('address'));
    await rejects(s, () => allocate('p-ex', { address: '10.41.0.300' }), invalid('address'));
    await rejects(s, () => allocate('nope', { address: '10.41.0.6' }), { status: 404, code: 'NOT_FOUND' });

    // validateOnly answers 200 with the would-be allocation and stores nothing.
    const before = await snapshot(s);
    const dry = await s.call('POST', '/v1/pools/p-ex/allocations?validateOnly=true', { json: { address: '10.41.0.6' } });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.equal(dry.body!.address, '10.41.0.6');
    assert.deepEqual(await snapshot(s), before);
  });

  test('the same owner again returns its allocation (idempotent retry)', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-idem', cidr: '10.43.0.0/24' } }));
    const first = await allocate('p-idem', { owner: 'veths/db/b' });
    assert.equal(first.status, 201);
    const before = await snapshot(s);
    const again = await allocate('p-idem', { owner: 'veths/db/b' });
    assert.equal(again.status, 201);
    assert.deepEqual(again.body, first.body);
    const explicit = await allocate('p-idem', { owner: 'veths/db/b', address: first.body!.address });
    assert.deepEqual(explicit.body, first.body);
    assert.deepEqual(await snapshot(s), before, 'a retry stores nothing new');
    await rejects(s, () => allocate('p-idem', { owner: 'veths/db/b', address: '10.43.0.200' }), {
      status: 409,
      code: 'ALREADY_EXISTS',
      field: 'owner',
    });
  });

  test('IPv6: get and delete through the percent-encoded address', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-v6', cidr: 'fd00:50::/64' } }));
    const auto = await allocate('p-v6');
    assert.equal(auto.status, 201);
    assert.equal(auto.body!.address, 'fd00:50::1', 'the subnet-router anycast address is skipped');
    assert.equal(auto.headers.get('location'), '/v1/pools/p-v6/allocations/fd00%3A50%3A%3A1');

    const a = await allocate('p-v6', { address: 'FD00:50:0:0::5', owner: 'v6-owner' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    assert.equal(a.body!.address, 'fd00:50::5');

    const got = await s.call('GET', '/v1/pools/p-v6/allocations/fd00%3A50%3A%3A5');
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.deepEqual(got.body, a.body);
    // Any spelling of the address finds it; the typed client encodes the path itself.
    const typed = await nk.GET('/v1/pools/{pool}/allocations/{address}', {
      params: { path: { pool: 'p-v6', address: 'fd00:50:0::5' } },
    });
    assert.equal(typed.response.status, 200, JSON.stringify(typed.error));
    assert.deepEqual(typed.data, a.body);

    assertRejected(await s.call('GET', '/v1/pools/p-v6/allocations/not-an-ip'), invalid('address'));
    assertRejected(await s.call('GET', '/v1/pools/p-v6/allocations/fd00%3A51%3A%3A5'), { status: 404, code: 'NOT_FOUND' });
    assertRejected(await s.call('GET', '/v1/pools/p-v6/allocations/10.0.0.1'), { status: 404, code: 'NOT_FOUND' });

    assert.equal((await s.call('DELETE', '/v1/pools/p-v6/allocations/fd00%3A50%3A%3A5')).status, 204);
    assertRejected(await s.call('GET', '/v1/pools/p-v6/allocations/fd00%3A50%3A%3A5'), { status: 404, code: 'NOT_FOUND' });
    await rejects(s, () => s.call('DELETE', '/v1/pools/p-v6/allocations/fd00%3A50%3A%3A5'), { status: 404, code: 'NOT_FOUND' });
  });

  test('release, then list; paging walks every allocation once', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-rel', cidr: '10.44.0.0/29' } }));
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await allocate('p-rel', { owner: `o${i}` })).body!.address);
    assert.deepEqual(got, ['10.44.0.1', '10.44.0.2', '10.44.0.3', '10.44.0.4']);

    const rel = await nk.DELETE('/v1/pools/{pool}/allocations/{address}', { params: { path: { pool: 'p-rel', address: '10.44.0.2' } } });
    assert.equal(rel.response.status, 204);

    const list = unwrap(await nk.GET('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-rel' } } }));
    assert.deepEqual(list.items.map((a) => a.address), ['10.44.0.1', '10.44.0.3', '10.44.0.4']);
    assert.equal(list.nextPageToken, '');

    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = unwrap(
        await nk.GET('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-rel' }, query: { pageSize: 1, pageToken } } }),
      );
      seen.push(...page.items.map((a) => a.address));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    assert.deepEqual(seen, ['10.44.0.1', '10.44.0.3', '10.44.0.4']);

    // Next-free moves on from the last address handed out: the released .2 is not reused at once.
    assert.equal((await allocate('p-rel')).body!.address, '10.44.0.5');

    const pool = unwrap(await nk.GET('/v1/pools/{name}', { params: { path: { name: 'p-rel' } } }));
    assert.deepEqual([pool.status.total, pool.status.allocated, pool.status.free], ['6', '4', '2']);

    assertRejected(await s.call('GET', '/v1/pools/p-rel/allocations?pageToken=garbage'), invalid('pageToken'));
    assertRejected(await s.call('GET', '/v1/pools/p-rel/allocations?pageSize=1001'), invalid('pageSize'));
    assertRejected(await s.call('GET', '/v1/pools/nope/allocations'), { status: 404, code: 'NOT_FOUND' });
  });

  test('deleting a pool with allocations is 409 FAILED_PRECONDITION naming the owners', async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-del', cidr: '10.45.0.0/24' } }));
    unwrap(await nk.POST('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-del' } }, body: { owner: 'veths/web/b' } }));
    unwrap(await nk.POST('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-del' } }, body: { owner: 'bridges/br0' } }));
    await rejects(s, () => s.call('DELETE', '/v1/pools/p-del'), {
      status: 409,
      code: 'FAILED_PRECONDITION',
      detail: ['veths/web/b', 'bridges/br0'],
    });
    // An update that would strand an allocation is refused the same way.
    await rejects(s, () => s.call('PATCH', '/v1/pools/p-del', { json: { gateway: '10.45.0.1' } }), {
      status: 409,
      code: 'FAILED_PRECONDITION',
      detail: ['veths/web/b'],
    });
    for (const address of ['10.45.0.1', '10.45.0.2']) assert.equal((await s.call('DELETE', `/v1/pools/p-del/allocations/${address}`)).status, 204);
    assert.equal((await s.call('DELETE', '/v1/pools/p-del')).status, 204);
  });
});

describe('bad input is rejected naming the field, and stores nothing', () => {
  before(async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-bad', cidr: '10.46.0.0/24' } }));
  });

  const pool = (over: Json): Json => ({ name: 'p-new', cidr: '10.47.0.0/24', ...over });
  const badPools: [string, Json, Rejection][] = [
    ['cidr is required', { name: 'p-new' }, invalid('cidr')],
    ['cidr with host bits set', pool({ cidr: '10.47.0.1/24' }), invalid('cidr')],
    ['cidr that is not a network', pool({ cidr: '10.47.0.0' }), invalid('cidr')],
    ['cidr of the wrong type', pool({ cidr: 10 }), invalid('cidr')],
    ['gateway outside the cidr', pool({ gateway: '10.48.0.1' }), invalid('gateway')],
    ['gateway on the network address', pool({ gateway: '10.47.0.0' }), invalid('gateway')],
    ['range start after end', pool({ ranges: [{ start: '10.47.0.9', end: '10.47.0.2' }] }), invalid('ranges[0].start')],
    ['range end outside', pool({ ranges: [{ start: '10.47.0.9', end: '10.48.0.2' }] }), invalid('ranges[0].end')],
    ['range without end', pool({ ranges: [{ start: '10.47.0.9' }] }), invalid('ranges[0].end')],
    ['reserved of the other family', pool({ reserved: ['fd00::1'] }), invalid('reserved[0]')],
    ['reserved malformed', pool({ reserved: ['10.47.0.x'] }), invalid('reserved[0]')],
    ['unknown field', pool({ color: 'red' }), invalid('color')],
    ['bad name', pool({ name: 'Bad_Name' }), invalid('name')],
    ['bad label key', pool({ labels: { '-x': 'y' } }), invalid('labels.-x')],
  ];
  for (const [rule, body, want] of badPools) {
    test(`pool: ${rule}`, async () => {
      await rejects(s, () => s.call('POST', '/v1/pools', { json: body }), want, rule);
      await rejects(s, () => s.call('POST', '/v1/pools?validateOnly=true', { json: body }), want, `${rule} (validateOnly)`);
    });
  }

  const badAllocations: [string, unknown, Rejection][] = [
    ['unknown field', { color: 'red' }, invalid('color')],
    ['address of the wrong type', { address: 5 }, invalid('address')],
    ['owner with a control character', { owner: 'a\nb' }, invalid('owner')],
    ['owner too long', { owner: 'x'.repeat(254) }, invalid('owner')],
    ['bad label key', { labels: { '-x': 'y' } }, invalid('labels.-x')],
    ['not an object', [1], invalid('')],
  ];
  for (const [rule, body, want] of badAllocations) {
    test(`allocation: ${rule}`, async () => {
      await rejects(s, () => s.call('POST', '/v1/pools/p-bad/allocations', { json: body }), want, rule);
      await rejects(s, () => s.call('POST', '/v1/pools/p-bad/allocations?validateOnly=true', { json: body }), want, `${rule} (validateOnly)`);
    });
  }
});

describe('bridges and veths take addresses from pools (addressPools)', () => {
  before(async () => {
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-use', cidr: '10.49.0.0/29', gateway: '10.49.0.1' } })); // hosts .1-.6
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-use6', cidr: 'fd00:49::/64', gateway: 'fd00:49::1' } }));
    unwrap(await nk.POST('/v1/pools', { body: { name: 'p-nogw', cidr: '10.49.1.0/24' } }));
    unwrap(await nk.POST('/v1/namespaces', { body: { name: 'use-a' } }));
  });

  test('a bridge shows its pools\' gateways, a veth end its allocations, with the pool prefix length', async () => {
    const br = unwrap(await nk.POST('/v1/bridges', { body: { name: 'br-use', addressPools: ['p-use', 'p-use6'] } }));
    assert.deepEqual(br.addressPools, ['p-use', 'p-use6']);
    assert.deepEqual(br.status.poolAddresses, [
      { pool: 'p-use', address: '10.49.0.1/29' },
      { pool: 'p-use6', address: 'fd00:49::1/64' },
    ]);
    const v = unwrap(
      await nk.POST('/v1/veths', {
        body: { name: 'use-a', a: { ifname: 'vh-use-a', bridge: 'br-use' }, b: { ifname: 'eth0', namespace: 'use-a', addressPools: ['p-use6', 'p-use'] } },
      }),
    );
    assert.deepEqual(v.b.addressPools, ['p-use6', 'p-use']);
    assert.deepEqual(v.status.b.poolAddresses, [
      { pool: 'p-use6', address: 'fd00:49::2/64' },
      { pool: 'p-use', address: '10.49.0.2/29' },
    ]);
    const held = unwrap(await nk.GET('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-use' } } }));
    assert.deepEqual(held.items.map((a) => [a.address, a.owner]), [['10.49.0.2', 'veths/use-a/b']]);

    // The owned allocation cannot be released through the pool, nor the pool deleted, while the veth names it.
    await rejects(s, () => s.call('DELETE', '/v1/pools/p-use/allocations/10.49.0.2'), { status: 409, code: 'FAILED_PRECONDITION', detail: ['veths/use-a'] });
    await rejects(s, () => s.call('DELETE', '/v1/pools/p-use'), { status: 409, code: 'FAILED_PRECONDITION', detail: ['veths/use-a', 'bridges/br-use'] });

    // PATCH drops a pool: its allocation is released at once.
    const patched = await s.call('PATCH', '/v1/veths/use-a', { json: { b: { addressPools: ['p-use6'] } }, contentType: 'application/merge-patch+json' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body!.status.b.poolAddresses, [{ pool: 'p-use6', address: 'fd00:49::2/64' }]);
    assert.deepEqual(unwrap(await nk.GET('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-use' } } })).items, []);

    assert.equal((await s.call('DELETE', '/v1/veths/use-a')).status, 204);
    assert.deepEqual(unwrap(await nk.GET('/v1/pools/{pool}/allocations', { params: { path: { pool: 'p-use6' } } })).items, []);
    assert.equal((await s.call('DELETE', '/v1/bridges/br-use')).status, 204);
  });

  const veth = (pools: unknown): Json => ({ name: 'use-bad', a: { ifname: 'vh-use-bad' }, b: { ifname: 'eth0', namespace: 'use-a', addressPools: pools } });
  const bad: [string, string, Json, Rejection][] = [
    ['addressPools not a list', '/v1/veths', veth('p-use'), invalid('b.addressPools')],
    ['a pool listed twice', '/v1/veths', veth(['p-use', 'p-use']), invalid('b.addressPools[1]')],
    ['a pool name that is not a name', '/v1/veths', veth(['P_USE']), invalid('b.addressPools[0]')],
    ['an unknown pool', '/v1/veths', veth(['p-use', 'p-ghost']), { status: 404, code: 'NOT_FOUND', field: 'b.addressPools[1]' }],
    ['a bridge pool without a gateway', '/v1/bridges', { name: 'br-bad', addressPools: ['p-nogw'] }, { status: 409, code: 'FAILED_PRECONDITION', field: 'addressPools[0]' }],
  ];
  for (const [rule, path, body, want] of bad) {
    test(`rejected: ${rule}; nothing stored`, async () => {
      await rejects(s, () => s.call('POST', path, { json: body }), want, rule);
      await rejects(s, () => s.call('POST', `${path}?validateOnly=true`, { json: body }), want, `${rule} (validateOnly)`);
      assert.equal((await s.call('GET', `${path}/${body.name}`)).status, 404);
    });
  }

  test('a full pool is 409 RESOURCE_EXHAUSTED on the field, and the veth is not created', async () => {
    const pods: string[] = [];
    for (let i = 0; i < 5; i++) {
      const name = `fill-${i}`;
      unwrap(await nk.POST('/v1/veths', { body: { name, a: { ifname: `vf${i}` }, b: { ifname: `vg${i}`, addressPools: ['p-use'] } } }));
      pods.push(name);
    }
    // .1 is the gateway, .2-.6 are taken: the pool is full.
    await rejects(s, () => s.call('POST', '/v1/veths', { json: veth(['p-use6', 'p-use']) }), { status: 409, code: 'RESOURCE_EXHAUSTED', field: 'b.addressPools[1]' });
    assert.equal((await s.call('GET', '/v1/veths/use-bad')).status, 404);
    for (const name of pods) assert.equal((await s.call('DELETE', `/v1/veths/${name}`)).status, 204);
  });
});
