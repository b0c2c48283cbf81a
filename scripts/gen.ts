/**
 * `npm run gen`: regenerates the committed generated code.
 *
 * - `src/gen/**` from `proto/netkeep/v1/*.proto` with protoc (npm `protoc`)
 *   and ts-proto (`TS_PROTO_OPTIONS` says which options and why);
 * - `clients/generated/netkeep.v1.ts` from `openapi/netkeep.v1.yaml` with
 *   openapi-typescript (skipped, with a message, while the yaml does not exist).
 *
 * The output depends only on the inputs and the pinned tool versions: no
 * timestamps, inputs in sorted order, paths resolved from this file's URL
 * (never the cwd). `test/unit/gen-fresh.test.ts` renders into a temp dir with
 * `renderGenerated()` and compares with the committed trees.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import openapiTS, { COMMENT_HEADER, astToString } from 'openapi-typescript';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Generated trees, relative to a root: what `renderGenerated()` writes. */
export const PROTO_OUT = 'src/gen';
export const OPENAPI_OUT = 'clients/generated/netkeep.v1.ts';
export const PROTO_DIR = join(ROOT, 'proto');
export const OPENAPI_SPEC = join(ROOT, 'openapi/netkeep.v1.yaml');

/**
 * ts-proto options (see node_modules/ts-proto/README.markdown):
 * - `outputServices=grpc-js`: service definitions and `XServer`/`XClient`
 *   types for @grpc/grpc-js, which the server registers directly;
 * - `esModuleInterop=true`, `importSuffix=.js`: ESM imports that NodeNext resolves;
 * - `env=node`: Buffer for bytes, no browser shims;
 * - `useDate=string`: Timestamps are RFC 3339 strings, as in the domain types
 *   and the proto3 JSON mapping;
 * - `forceLong=number`: int64 (generation) as number; ts-proto throws past 2^53;
 * - `stringEnums=true`: `ResourceStatus_State.READY === "READY"`, the domain `State`;
 * - `unrecognizedEnum=false`: no synthetic `UNRECOGNIZED` member, so the enum
 *   type is exactly the proto's values;
 * - `snakeToCamel=true`: fields are the lowerCamelCase JSON names of DESIGN.md §2,
 *   so a decoded message already has the flat form's field names;
 * - `useOptionals=none` (the ts-proto default, stated here): every scalar
 *   field is present in the type, so a converter that forgets one does not
 *   compile; messages are `T | undefined` as on the wire;
 * - `annotateFilesWithVersion=true` (default): the header names the
 *   protoc and ts-proto versions, which are pinned, so output stays stable.
 */
export const TS_PROTO_OPTIONS = [
  'outputServices=grpc-js',
  'esModuleInterop=true',
  'importSuffix=.js',
  'env=node',
  'useDate=string',
  'forceLong=number',
  'stringEnums=true',
  'unrecognizedEnum=false',
  'snakeToCamel=true',
  'useOptionals=none',
].join(',');

const require = createRequire(import.meta.url);

/** Every `.proto` file under `dir`, as sorted absolute paths. */
function protoFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.proto'))
    .map((f) => join(dir, f))
    .sort();
}

/** Runs protoc + ts-proto over `proto/` into `outDir` (created if missing). */
export function renderProto(outDir: string): void {
  mkdirSync(outDir, { recursive: true });
  const protocDir = dirname(require.resolve('protoc/package.json'));
  const plugin = join(dirname(require.resolve('ts-proto/package.json')), 'protoc-gen-ts_proto');
  execFileSync(
    process.execPath,
    [
      join(protocDir, 'protoc.cjs'),
      `--plugin=protoc-gen-ts_proto=${plugin}`,
      `--ts_proto_out=${outDir}`,
      `--ts_proto_opt=${TS_PROTO_OPTIONS}`,
      `--proto_path=${PROTO_DIR}`,
      `--proto_path=${join(protocDir, 'include')}`,
      ...protoFiles(PROTO_DIR),
    ],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
}

/** Renders the OpenAPI types into `outFile`; false (nothing written) when the spec does not exist yet. */
export async function renderOpenapi(outFile: string): Promise<boolean> {
  if (!existsSync(OPENAPI_SPEC)) return false;
  // `cwd` and the default Redocly config are passed explicitly so that no
  // redocly.yaml from the caller's cwd changes the output.
  const ast = await openapiTS(pathToFileURL(OPENAPI_SPEC), { cwd: pathToFileURL(`${ROOT}/`), silent: true });
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, COMMENT_HEADER + astToString(ast));
  return true;
}

/**
 * Renders both generated trees under `root`, laid out as in the repository
 * (`<root>/src/gen/…`, `<root>/clients/generated/netkeep.v1.ts`). Returns the
 * files written, relative to `root`, sorted.
 */
export async function renderGenerated(root: string): Promise<string[]> {
  const protoOut = join(root, PROTO_OUT);
  rmSync(protoOut, { recursive: true, force: true });
  renderProto(protoOut);
  const written = listFiles(protoOut).map((f) => relative(root, f));
  if (await renderOpenapi(join(root, OPENAPI_OUT))) written.push(OPENAPI_OUT);
  return written.sort();
}

/** Every file under `dir`, as sorted absolute paths; [] when `dir` does not exist. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

async function main(): Promise<void> {
  const written = await renderGenerated(ROOT);
  if (!written.includes(OPENAPI_OUT)) {
    console.log(`gen: ${relative(ROOT, OPENAPI_SPEC)} does not exist yet; skipped ${OPENAPI_OUT}`);
  }
  console.log(`gen: wrote ${written.length} files`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
