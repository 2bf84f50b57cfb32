import { z } from 'zod';
import packageJson from '../package.json';
import {
  jwksResponse,
  meResponse,
  publicJwk,
  refreshBody,
  signInBody,
  signInResponse,
  signOutAllResponse,
  signOutBody,
  signOutResponse,
  signUpBody,
  signUpResponse,
  tokenResponse,
} from './auth.schema';
import { errorBody, livenessResponse, readinessResponse, welcomeResponse } from './common.schema';
import { ERRORS, RESPONSE_HEADERS, type ErrorCode, type ResponseHeaderName } from './errors';
import { OPERATIONS, SHARED_RESPONSES, type Access, type ErrorResponseSpec, type HttpMethod, type OperationSpec, type ResponseSpec } from './operations';
import {
  adminUser,
  authEvent,
  disableUserResponse,
  enableUserResponse,
  eventPage,
  setRolesBody,
  setRolesResponse,
  userPage,
} from './users.schema';

/** A JSON Schema (2020-12) as it appears in the document. */
export type JsonSchema = { [keyword: string]: unknown };

export interface MediaTypeObject {
  schema: JsonSchema;
}

export interface HeaderObject {
  description: string;
  required: boolean;
  schema: JsonSchema;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, HeaderObject>;
  content?: Record<string, MediaTypeObject>;
}

export interface ReferenceObject {
  $ref: string;
}

export interface ParameterObject {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  description?: string;
  schema: JsonSchema;
}

export interface OperationObject {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  security?: Record<string, string[]>[];
  parameters?: ParameterObject[];
  requestBody?: { required: boolean; content: Record<string, MediaTypeObject> };
  responses: Record<string, ResponseObject | ReferenceObject>;
}

/** The OpenAPI 3.1 document of the public API (the parts Gatehouse uses). */
export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: { url: string; description: string }[];
  tags: { name: string; description: string }[];
  paths: Record<string, Partial<Record<HttpMethod, OperationObject>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, ResponseObject>;
    securitySchemes: Record<string, Record<string, string>>;
  };
}

const SCHEMA_REF = '#/components/schemas/';
const RESPONSE_REF = '#/components/responses/';

/**
 * The named schemas of the document. Request bodies are documented as the client sends them
 * (zod's input side: before trimming and defaults), responses as the services send them.
 * Every body an operation declares must be named here.
 */
const REQUEST_SCHEMAS: Record<string, z.ZodType> = {
  SignUpRequest: signUpBody,
  SignInRequest: signInBody,
  RefreshRequest: refreshBody,
  SignOutRequest: signOutBody,
  SetRolesRequest: setRolesBody,
};
const RESPONSE_SCHEMAS: Record<string, z.ZodType> = {
  Error: errorBody,
  Welcome: welcomeResponse,
  Liveness: livenessResponse,
  Readiness: readinessResponse,
  SignUpResponse: signUpResponse,
  SignInResponse: signInResponse,
  TokenResponse: tokenResponse,
  MeResponse: meResponse,
  SignOutResponse: signOutResponse,
  SignOutAllResponse: signOutAllResponse,
  PublicJwk: publicJwk,
  Jwks: jwksResponse,
  AdminUser: adminUser,
  UserPage: userPage,
  SetRolesResponse: setRolesResponse,
  DisableUserResponse: disableUserResponse,
  EnableUserResponse: enableUserResponse,
  AuthEvent: authEvent,
  EventPage: eventPage,
};

const SECURITY_SCHEMES = {
  accessToken: {
    type: 'apiKey',
    in: 'header',
    name: 'x-access-token',
    description: "The access token from sign-in, as the tutorial's clients send it.",
  },
  bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The access token from sign-in.' },
};
const TOKEN_REQUIRED: Record<string, string[]>[] = [{ accessToken: [] }, { bearer: [] }];

const ACCESS_NOTE: Record<Access, string | undefined> = {
  anyone: undefined,
  'signed-in': 'Needs an access token.',
  'signed-in or refresh token': 'Needs an access token, or a refresh token in the body.',
  moderator: 'Needs an access token with the `moderator` role.',
  admin: 'Needs an access token with the `admin` role.',
};

const DESCRIPTION = [
  "Gatehouse's public API, as the gateway serves it: `/api/auth/*` goes to the auth service, `/api/test/*` to the",
  "content service. Paths, fields, statuses and messages are the classic Node.js JWT tutorial's, except where the",
  'tutorial is insecure (see the README).',
  '',
  'Every error is JSON `{message, code, details?, requestId}`: `code` (`area.reason`) is what clients branch on;',
  "`message` is the tutorial's text where it has one. Each response below lists the codes it can carry.",
  '',
  'Request bodies are JSON (415 otherwise) of at most 16 KiB (413); unknown fields and query parameters are refused',
  '(400). Under `/api/auth` and `/api/test`, a method a path does not serve is a 405 `request.method_not_allowed`;',
  'an unknown path is a 404 `request.not_found`.',
].join('\n');

/** Converts the schemas of one registry; each becomes a component, and reuses refer to it. */
function componentSchemas(named: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(named)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io, uri: (id) => `${SCHEMA_REF}${id}` });
  return Object.fromEntries(Object.entries(schemas).map(([id, schema]) => [id, withoutRootKeywords(schema)]));
}

/** Drops `$schema` (the document's dialect applies) and the `$id` zod sets to the component's ref. */
function withoutRootKeywords(schema: JsonSchema): JsonSchema {
  const { $schema: _dialect, $id: _id, ...rest } = schema;
  return rest;
}

/** The `$ref` of a named schema; throws for one that is not named, so no body goes undocumented. */
function refTo(named: Record<string, z.ZodType>, schema: z.ZodType): JsonSchema {
  const entry = Object.entries(named).find(([, candidate]) => candidate === schema);
  if (!entry) throw new Error('an operation uses a schema that has no name in REQUEST_SCHEMAS/RESPONSE_SCHEMAS');
  return { $ref: `${SCHEMA_REF}${entry[0]}` };
}

/** A JSON Schema matching one `message` of the catalogue: the exact text, or a pattern. */
function messageSchema(message: string | RegExp): JsonSchema {
  return typeof message === 'string' ? { const: message } : { type: 'string', pattern: message.source };
}

/** The error body narrowed to `codes`, each with its message; the headers every one of them sends. */
function errorResponse(spec: ErrorResponseSpec): ResponseObject {
  const variants = spec.errors.map((code) => ({
    type: 'object',
    properties: { code: { const: code }, message: messageSchema(ERRORS[code].message) },
  }));
  const narrowed = variants.length === 1 ? variants[0] : { anyOf: variants };
  const codeList = spec.errors.map((code) => `- \`${code}\`: ${describeMessage(ERRORS[code].message)}`).join('\n');
  const headers = headersOf(spec.errors);
  return {
    description: `${spec.description}\n\n${codeList}`,
    ...(headers && { headers }),
    content: { 'application/json': { schema: { allOf: [{ $ref: `${SCHEMA_REF}Error` }, narrowed] } } },
  };
}

function describeMessage(message: string | RegExp): string {
  return typeof message === 'string' ? message : `matches \`${message.source}\``;
}

/** A header is listed when a code sends it, and required when every code does. */
function headersOf(codes: readonly ErrorCode[]): Record<string, HeaderObject> | undefined {
  const sent = (code: ErrorCode): readonly ResponseHeaderName[] => ERRORS[code].headers ?? [];
  const names = new Set(codes.flatMap(sent));
  if (names.size === 0) return undefined;
  return Object.fromEntries(
    [...names].map((name) => [
      name,
      {
        description: RESPONSE_HEADERS[name].description,
        required: codes.every((code) => sent(code).includes(name)),
        schema: { type: 'string', pattern: RESPONSE_HEADERS[name].pattern.source },
      },
    ]),
  );
}

/** Throws when a response lists a code the catalogue gives another status: a typo in the table. */
function checkStatus(operation: OperationSpec, status: string, spec: ResponseSpec): void {
  const codes = 'shared' in spec ? SHARED_RESPONSES[spec.shared].errors : 'errors' in spec ? spec.errors : [];
  const wrong = codes.find((code) => String(ERRORS[code].status) !== status);
  if (wrong) throw new Error(`${operation.operationId}: ${wrong} is a ${ERRORS[wrong].status}, listed under ${status}`);
}

function responseObject(spec: ResponseSpec): ResponseObject | ReferenceObject {
  if ('shared' in spec) return { $ref: `${RESPONSE_REF}${spec.shared}` };
  if ('errors' in spec) return errorResponse(spec);
  if ('json' in spec) return { description: spec.description, content: { 'application/json': { schema: refTo(RESPONSE_SCHEMAS, spec.json) } } };
  return { description: spec.description, content: { 'text/plain': { schema: inlineSchema(spec.text, 'output') } } };
}

function inlineSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  return withoutRootKeywords(z.toJSONSchema(schema, { target: 'draft-2020-12', io }));
}

/** One parameter per property of a params or query schema, as the client sends them. */
function parameters(schema: z.ZodObject, where: 'path' | 'query'): ParameterObject[] {
  const converted = inlineSchema(schema, 'input');
  const required = new Set(Array.isArray(converted.required) ? converted.required : []);
  return Object.entries(isSchema(converted.properties) ? converted.properties : {}).map(([name, property]) => {
    const { description, ...propertySchema } = isSchema(property) ? property : {};
    return {
      name,
      in: where,
      required: where === 'path' || required.has(name),
      ...(typeof description === 'string' && { description }),
      schema: propertySchema,
    };
  });
}

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function operationObject(operation: OperationSpec): OperationObject {
  const access = ACCESS_NOTE[operation.access];
  const description = [operation.description, access].filter(Boolean).join('\n\n');
  const params = [
    ...(operation.params ? parameters(operation.params, 'path') : []),
    ...(operation.query ? parameters(operation.query, 'query') : []),
  ];
  return {
    operationId: operation.operationId,
    tags: [operation.tag],
    summary: operation.summary,
    ...(description && { description }),
    ...(operation.access !== 'anyone' && {
      // `{}`: no token needed when the body carries a refresh token.
      security: operation.access === 'signed-in or refresh token' ? [...TOKEN_REQUIRED, {}] : TOKEN_REQUIRED,
    }),
    ...(params.length > 0 && { parameters: params }),
    ...(operation.body && {
      requestBody: {
        required: operation.body.required,
        content: { 'application/json': { schema: refTo(REQUEST_SCHEMAS, operation.body.schema) } },
      },
    }),
    responses: Object.fromEntries(
      Object.entries(operation.responses).flatMap(([status, spec]) => {
        if (!spec) return [];
        checkStatus(operation, status, spec);
        return [[status, responseObject(spec)]];
      }),
    ),
  };
}

/**
 * Builds the OpenAPI 3.1 document of the public API from the same zod schemas the services
 * validate their input with, and the response schemas the contract test holds them to.
 *
 * @remarks Pure and deterministic; the gateway builds it once at start-up.
 */
export function buildOpenApiDocument(): OpenApiDocument {
  const paths: OpenApiDocument['paths'] = {};
  for (const operation of OPERATIONS) {
    const item = (paths[operation.path] ??= {});
    if (item[operation.method]) throw new Error(`${operation.method.toUpperCase()} ${operation.path} is listed twice`);
    item[operation.method] = operationObject(operation);
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Gatehouse API', version: packageJson.version, description: DESCRIPTION },
    servers: [{ url: '/', description: 'The gateway' }],
    tags: [
      { name: 'auth', description: 'Sign-up, sign-in, sessions and the signing keys (the auth service).' },
      { name: 'admin', description: 'Users and the audit log; admins only (the auth service).' },
      { name: 'content', description: "The tutorial's boards, by role (the content service)." },
      { name: 'gateway', description: "The gateway's own routes." },
    ],
    paths,
    components: {
      schemas: { ...componentSchemas(REQUEST_SCHEMAS, 'input'), ...componentSchemas(RESPONSE_SCHEMAS, 'output') },
      responses: Object.fromEntries(
        Object.entries(SHARED_RESPONSES).map(([name, spec]) => [name, errorResponse(spec)]),
      ),
      securitySchemes: SECURITY_SCHEMES,
    },
  };
}
