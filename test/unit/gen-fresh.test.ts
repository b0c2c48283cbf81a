/**
 * The committed generated code is what `npm run gen` makes from the current
 * protos and OpenAPI file: regenerates both trees into a temp dir and names
 * every file that is stale, missing or left over.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { OPENAPI_OUT, OPENAPI_SPEC, PROTO_OUT, ROOT, listFiles, renderGenerated } from '../../scripts/gen.js';

const tmp = mkdtempSync(join(tmpdir(), 'netkeep-gen-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('committed generated code is fresh (run `npm run gen` when this fails)', async () => {
  const fresh = await renderGenerated(tmp);
  const committed = listFiles(join(ROOT, PROTO_OUT)).map((f) => relative(ROOT, f));
  if (existsSync(OPENAPI_SPEC) && existsSync(join(ROOT, OPENAPI_OUT))) committed.push(OPENAPI_OUT);

  const stale: string[] = [];
  for (const file of fresh) {
    const path = join(ROOT, file);
    if (!existsSync(path)) stale.push(`${file} (missing)`);
    else if (readFileSync(path, 'utf8') !== readFileSync(join(tmp, file), 'utf8')) stale.push(`${file} (differs)`);
  }
  for (const file of committed) if (!fresh.includes(file)) stale.push(`${file} (no longer generated)`);

  assert.deepEqual(stale.sort(), [], `stale generated files: ${stale.join(', ')}`);
});

test('generation is deterministic', async () => {
  const again = mkdtempSync(join(tmpdir(), 'netkeep-gen-'));
  try {
    const files = await renderGenerated(again);
    for (const file of files) {
      assert.equal(readFileSync(join(again, file), 'utf8'), readFileSync(join(tmp, file), 'utf8'), file);
    }
  } finally {
    rmSync(again, { recursive: true, force: true });
  }
});
