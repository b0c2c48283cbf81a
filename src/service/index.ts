import type { Store } from '../store/index.js';
import { IpamService } from './ipam.js';
import { PoolUse } from './pooled.js';
import { ResourceServiceImpl, type ServiceHooks } from './resources.js';
import type { Services } from './types.js';

export type { Services, ResourceService, ListOptions, ListResult, WriteOptions } from './types.js';
export { type ServiceHooks } from './resources.js';
export { mergePatch } from './common.js';

/** Builds the use cases of every kind over one store. */
export function createServices(store: Store, hooks: ServiceHooks): Services {
  const ipam = new IpamService(store, { onChange: () => hooks.onChange() });
  const pools = new PoolUse(store, ipam);
  return {
    namespaces: new ResourceServiceImpl('namespaces', store, hooks, pools),
    bridges: new ResourceServiceImpl('bridges', store, hooks, pools),
    veths: new ResourceServiceImpl('veths', store, hooks, pools),
    routes: new ResourceServiceImpl('routes', store, hooks, pools),
    loadbalancers: new ResourceServiceImpl('loadbalancers', store, hooks, pools),
    ipam,
    ready: () => hooks.ready(),
  };
}
