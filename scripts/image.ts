/**
 * How the image runs each service, read from the Dockerfile and docker-compose.yml themselves,
 * so that `pnpm bench` and the compose test run the services exactly so.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '..');

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/**
 * `ENV` of the Dockerfile's last stage (the runtime image), as Docker reads it: `KEY=value` and
 * `KEY="several words"` pairs, lines continued with a backslash.
 */
export function runtimeImageEnv(dockerfilePath = path.join(ROOT, 'Dockerfile')): Record<string, string> {
  const dockerfile = readFileSync(dockerfilePath, 'utf8').replace(/\\\n/g, ' ');
  const runtime = dockerfile.slice(dockerfile.search(/^FROM .*$(?![\s\S]*^FROM )/m));
  const env: Record<string, string> = {};
  for (const [, line = ''] of runtime.matchAll(/^ENV\s+(.+)$/gm)) {
    for (const [, key = '', quoted, bare] of line.matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g)) {
      env[key] = quoted === undefined ? (bare ?? '') : quoted.replace(/\\(.)/g, '$1');
    }
  }
  return env;
}

/**
 * The options docker-compose.yml gives node before the script in `service`'s command, such as
 * auth's `--max-old-space-size`; none when the service has no such command.
 */
export function composeNodeFlags(service: string, composePath = path.join(ROOT, 'docker-compose.yml')): string[] {
  const compose: unknown = parse(readFileSync(composePath, 'utf8'), { merge: true });
  const services = isRecord(compose) && isRecord(compose.services) ? compose.services : {};
  const entry = services[service];
  const command = isRecord(entry) ? entry.command : undefined;
  if (!Array.isArray(command) || command[0] !== 'node') return [];
  const flags: string[] = [];
  for (const arg of command.slice(1)) {
    if (typeof arg !== 'string' || !arg.startsWith('-')) break;
    flags.push(arg);
  }
  return flags;
}
