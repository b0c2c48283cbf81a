/**
 * gRPC LoadBalancerService end to end: a server on a unix socket over a
 * real Services (in-memory store), called with the generated client. Enums
 * go over the wire as numbers and come back as the same names.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { bindGrpc, createGrpcServer } from '../../src/api/grpc/server.js';
import {
  LoadBalancer,
  LoadBalancerPort_Protocol,
  LoadBalancerServiceClient,
  LoadBalancer_Algorithm,
} from '../../src/gen/netkeep/v1/loadbalancer.js';
import { createServices } from '../../src/service/index.js';
import { openStore } from '../../src/store/index.js';
import { call, fails, violations } from '../support/grpc.js';

const dir = mkdtempSync(join(tmpdir(), 'netkeep-grpc-lb-'));
const address = `unix:${join(dir, 'grpc.sock')}`;
let server: ReturnType<typeof createGrpcServer>;
let lbs: LoadBalancerServiceClient;

before(async () => {
  const services = createServices(openStore(':memory:'), { onChange() {}, ready: () => true });
  server = createGrpcServer(services, pino({ level: 'silent' }));
  await bindGrpc(server.server, address);
  lbs = new LoadBalancerServiceClient(address, grpc.credentials.createInsecure());
});

after(async () => {
  lbs.close();
  await new Promise<void>((done) => server.server.tryShutdown(() => done()));
  rmSync(dir, { recursive: true, force: true });
});

test('create with enums, update ports and backends with a mask, delete', async () => {
  const created = await call(lbs.createLoadBalancer.bind(lbs), {
    loadBalancer: LoadBalancer.fromPartial({
      name: 'g-web',
      vip: '10.96.0.10',
      ports: [{ protocol: LoadBalancerPort_Protocol.UDP, port: 53, targetPort: 5353 }],
      backends: [{ address: '10.50.0.11', weight: 2 }],
      algorithm: LoadBalancer_Algorithm.ROUND_ROBIN,
      sessionAffinity: { clientIp: { timeoutSeconds: 0 } },
    }),
    validateOnly: false,
  });
  assert.equal(created.ports[0]!.protocol, LoadBalancerPort_Protocol.UDP);
  assert.equal(created.algorithm, LoadBalancer_Algorithm.ROUND_ROBIN);
  assert.equal(created.sessionAffinity?.clientIp?.timeoutSeconds, 10800);
  assert.equal(created.status?.vip, '10.96.0.10');

  const updated = await call(lbs.updateLoadBalancer.bind(lbs), {
    loadBalancer: LoadBalancer.fromPartial({ name: 'g-web', backends: [{ address: '10.50.0.12' }, { address: '10.50.0.13', port: 9090 }] }),
    updateMask: ['backends', 'session_affinity'],
    validateOnly: false,
  });
  assert.deepEqual(updated.backends.map((b) => [b.address, b.port, b.weight]), [['10.50.0.12', 0, 1], ['10.50.0.13', 9090, 1]]);
  assert.equal(updated.sessionAffinity?.clientIp, undefined, 'an unset sub-message in the mask resets it');
  assert.equal(updated.ports[0]!.protocol, LoadBalancerPort_Protocol.UDP, 'fields outside the mask keep their value');

  const bad = await fails(
    call(lbs.createLoadBalancer.bind(lbs), { loadBalancer: LoadBalancer.fromPartial({ name: 'g-bad', vip: '10.96.0.11', ports: [{ port: 70000 }] }), validateOnly: false }),
    grpc.status.INVALID_ARGUMENT,
  );
  assert.deepEqual(violations(bad).map((v) => v.field), ['ports[0].port']);

  await call(lbs.deleteLoadBalancer.bind(lbs), { name: 'g-web', etag: '' });
  await fails(call(lbs.getLoadBalancer.bind(lbs), { name: 'g-web' }), grpc.status.NOT_FOUND);
});
