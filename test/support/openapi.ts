/**
 * Response checks against `openapi/netkeep.v1.yaml`: every response a test
 * sees is validated against the schema the document gives for its path,
 * method, status and content type (ajv, JSON Schema 2020-12, which OpenAPI
 * 3.1 schemas are).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Middleware } from 'openapi-fetch';
import { parse as parseYaml } from 'yaml';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv2020,
) => Ajv2020;

export const OPENAPI_FILE = fileURLToPath(new URL('../../openapi/netkeep.v1.yaml', import.meta.url));

type Json = Record<string, any>;

/** The parsed document. */
export const openapi: Json = parseYaml(readFileSync(OPENAPI_FILE, 'utf8'));

const DOC_ID = 'urn:netkeep:openapi:v1';

const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
// The component schemas live under `components`, which is not a JSON Schema keyword.
ajv.addVocabulary(['components']);
ajv.addSchema({ $id: DOC_ID, components: { schemas: openapi.components.schemas } });

const compiled = new Map<string, ValidateFunction>();

/** Rewrites document-relative `$ref`s (`#/components/...`) to point into the registered document. */
function anchor(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(anchor);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith('#') ? DOC_ID + v : anchor(v)]),
  );
}

function deref(obj: Json): Json {
  let o = obj;
  while (typeof o.$ref === 'string') {
    const parts = (o.$ref as string).replace(/^#\//, '').split('/');
    o = parts.reduce<Json>((n, p) => n[p.replace(/~1/g, '/').replace(/~0/g, '~')], openapi);
  }
  return o;
}

function validatorFor(key: string, schema: unknown): ValidateFunction {
  let v = compiled.get(key);
  if (!v) {
    v = ajv.compile(anchor(schema) as object);
    compiled.set(key, v);
  }
  return v;
}

/** The documented path template (`/v1/bridges/{name}`) a concrete path matches. */
export function pathTemplate(path: string): string | undefined {
  const pathname = path.split('?')[0]!;
  return Object.keys(openapi.paths).find((t) =>
    new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(pathname),
  );
}

/**
 * Asserts that a response is documented and its body matches the schema:
 * the status must be listed for `method` on `template`, the content type
 * must be one it lists, and an answer without content must have no body.
 * `body` is the raw text of the response.
 */
export function assertDocumentedResponse(
  method: string,
  template: string,
  status: number,
  contentType: string | null,
  body: string,
): void {
  const where = `${method.toUpperCase()} ${template} → ${status}`;
  const op = openapi.paths[template]?.[method.toLowerCase()];
  assert.ok(op, `${method.toUpperCase()} ${template} is not in the OpenAPI document`);
  const responses = op.responses as Json;
  const documented = responses[String(status)] ?? responses.default;
  assert.ok(documented, `${where} is not a documented response (documented: ${Object.keys(responses).join(', ')})`);
  const response = deref(documented);
  if (!response.content) {
    assert.equal(body, '', `${where} is documented without content but has a body`);
    return;
  }
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const media = response.content[mediaType];
  assert.ok(media, `${where}: content type "${mediaType}" is not documented (${Object.keys(response.content).join(', ')})`);
  assertMatchesSchema(`${where} ${mediaType}`, media.schema, JSON.parse(body));
}

/** Asserts `value` matches `schema` (a schema object of the document, `$ref`s document-relative). */
export function assertMatchesSchema(label: string, schema: unknown, value: unknown): void {
  const validate = validatorFor(JSON.stringify(schema), schema);
  if (!validate(value)) {
    assert.fail(`${label}: body does not match the OpenAPI schema:\n${ajv.errorsText(validate.errors, { separator: '\n' })}\n${JSON.stringify(value, null, 2)}`);
  }
}

/** Asserts a body is a Problem (for answers to routes the document does not list). */
export function assertProblem(value: unknown): void {
  assertMatchesSchema('Problem', { $ref: '#/components/schemas/Problem' }, value);
}

/**
 * Checks a fetch Response against the document: by its template when the
 * path is documented, else (unknown routes) as a problem+json Problem.
 * Returns the parsed body (undefined when empty). Consumes the response.
 */
export async function checkResponse(method: string, path: string, res: Response): Promise<unknown> {
  const text = await res.text();
  const template = pathTemplate(path);
  const documentedMethod = template && openapi.paths[template][method.toLowerCase()];
  if (documentedMethod) {
    assertDocumentedResponse(method, template, res.status, res.headers.get('content-type'), text);
  } else {
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assertProblem(JSON.parse(text));
  }
  return text === '' ? undefined : JSON.parse(text);
}

/** An openapi-fetch middleware that checks every response against the document. */
export const validateResponses: Middleware = {
  async onResponse({ request, response, schemaPath }) {
    const text = await response.clone().text();
    assertDocumentedResponse(request.method, schemaPath, response.status, response.headers.get('content-type'), text);
    return undefined;
  },
};
