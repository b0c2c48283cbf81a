/**
 * A set of service ports covering what the renderer writes (RANDOM with
 * weights, ROUND_ROBIN, affinity with sourceRanges, no backends, IPv6 and
 * SCTP), for the golden test and for the kernel test of nft's listing.
 */
import type { DesiredServicePort } from '../../src/reconcile/nft.js';

export const web: DesiredServicePort = {
  owner: 'loadbalancers/web',
  name: 'web',
  family: 4,
  vip: '10.96.0.10',
  protocol: 'TCP',
  port: 80,
  backends: [
    { address: '10.50.0.11', port: 8080, weight: 1 },
    { address: '10.50.0.12', port: 8080, weight: 3 },
    { address: '10.50.0.13', port: 8080, weight: 1 },
  ],
  algorithm: 'RANDOM',
  affinitySeconds: 0,
  sourceRanges: [],
};
export const services: DesiredServicePort[] = [
  web,
  { ...web, name: 'dns', owner: 'loadbalancers/dns', vip: '10.96.0.53', protocol: 'UDP', port: 53, algorithm: 'ROUND_ROBIN',
    backends: [{ address: '10.50.0.11', port: 5353, weight: 2 }, { address: '10.50.0.12', port: 5353, weight: 1 }] },
  { ...web, name: 'sticky', owner: 'loadbalancers/sticky', vip: '10.96.0.20', affinitySeconds: 600, sourceRanges: ['10.50.0.0/24'],
    backends: [{ address: '10.50.0.11', port: 8080, weight: 1 }] },
  { ...web, name: 'empty', owner: 'loadbalancers/empty', vip: '10.96.0.30', backends: [] },
  { ...web, name: 'web6', owner: 'loadbalancers/web6', family: 6, vip: 'fd00:96::10', protocol: 'SCTP',
    backends: [{ address: 'fd00:50::11', port: 8080, weight: 1 }, { address: 'fd00:50::12', port: 8080, weight: 1 }] },
];
