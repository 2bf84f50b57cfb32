/**
 * What the Dockerfile's runtime image sets, read from the file itself, so that `pnpm bench` and
 * the compose test run the services with exactly the image's environment.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * `ENV` of the Dockerfile's last stage (the runtime image), as Docker reads it: `KEY=value` and
 * `KEY="several words"` pairs, lines continued with a backslash.
 */
export function runtimeImageEnv(dockerfilePath = path.resolve(__dirname, '..', 'Dockerfile')): Record<string, string> {
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
