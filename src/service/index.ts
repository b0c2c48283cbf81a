import type { Store } from '../store/index.js';
import { IpamService } from './ipam.js';
import { ResourceServiceImpl, type ServiceHooks } from './resources.js';
import type { Services } from './types.js';

export type { Services, ResourceService, ListOptions, ListResult, WriteOptions } from './types.js';
export { type ServiceHooks } from './resources.js';
export { mergePatch } from './common.js';

/** Builds the use cases of every kind over one store. */
export function createServices(store: Store, hooks: ServiceHooks): Services {
  return {
    namespaces: new ResourceServiceImpl('namespaces', store, hooks),
    bridges: new ResourceServiceImpl('bridges', store, hooks),
    veths: new ResourceServiceImpl('veths', store, hooks),
    routes: new ResourceServiceImpl('routes', store, hooks),
    ipam: new IpamService(store, { onChange: () => hooks.onChange() }),
    ready: () => hooks.ready(),
  };
}
