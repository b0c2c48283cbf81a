// Worker threads do not inherit the test runner's tsx hooks: register them,
// then load the TypeScript worker (allocate-worker.ts).
import { register } from 'tsx/esm/api';

register();
await import('./allocate-worker.ts');
