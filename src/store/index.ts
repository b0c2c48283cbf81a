export { Store, type Claims, type ClaimOwner } from './store.js';
export { DatabaseTooNewError, migrate, loadMigrations, MIGRATIONS_DIR } from './migrate.js';
import { Store } from './store.js';

/** Opens the store at `path` (a file, or ':memory:'), migrated to the newest schema. */
export function openStore(path: string): Store {
  return new Store(path);
}
