/**
 * `pnpm conformance --base <url>`: runs the security conformance checks against a Gatehouse
 * deployment through its gateway, prints one line per check and a summary, and exits 0 only
 * when every check passed (1 when one failed, 2 for a usage error).
 */
import { parseArgs } from 'node:util';
import { CHECK_GROUPS, formatResult, formatSummary, runChecks, type CheckGroup } from './checks';

const USAGE = `Usage: pnpm conformance --base <url> [--group <name>]… [--include-rate-limit]

Runs security conformance checks over HTTP against a Gatehouse deployment, through its
gateway. Each check signs up its own fresh users, so it is safe against a shared deployment.

Options:
  --base <url>            the gateway, e.g. http://127.0.0.1:8080 (required)
  --group <name>          run only this group; repeatable (${CHECK_GROUPS.join(', ')})
  --include-rate-limit    also check the gateway's rate limit; this blocks your address at the
                          gateway for a while, so it is skipped unless asked for
  -h, --help              show this help

Prints PASS/FAIL/SKIP <group> <name> per check, then "N passed, M failed".
One run makes about 30 failed sign-ins from your address, which is what Gatehouse tolerates
from one address in 15 minutes: wait that long before running again from the same address.
Exit status: 0 all passed, 1 a check failed, 2 usage error.
`;

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

function isCheckGroup(value: string): value is CheckGroup {
  return CHECK_GROUPS.some((group) => group === value);
}

function usageError(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exit(EXIT_USAGE);
}

function readArgs(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      options: {
        base: { type: 'string' },
        group: { type: 'string', multiple: true },
        'include-rate-limit': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // parseArgs explains unknown options and missing values itself.
    return usageError(err instanceof Error ? err.message : String(err));
  }
}

function parseCommandLine(argv: string[]): { base: string; groups?: CheckGroup[]; includeRateLimit: boolean } {
  const values = readArgs(argv);
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (!values.base) usageError('--base is required.');
  if (!URL.canParse(values.base) || !/^https?:$/.test(new URL(values.base).protocol)) {
    usageError(`--base must be an http(s) URL such as http://127.0.0.1:8080, not ${JSON.stringify(values.base)}.`);
  }
  const groups = values.group?.map((group) => (isCheckGroup(group) ? group : usageError(`Unknown group ${JSON.stringify(group)}.`)));
  return { base: values.base, groups, includeRateLimit: values['include-rate-limit'] };
}

async function main(): Promise<void> {
  const { base, groups, includeRateLimit } = parseCommandLine(process.argv.slice(2));
  const results = await runChecks(base, {
    groups,
    includeRateLimit,
    onResult: (result) => process.stdout.write(`${formatResult(result)}\n`),
  });
  process.stdout.write(`${formatSummary(results)}\n`);
  process.exitCode = results.some((result) => result.outcome === 'fail') ? EXIT_FAILED : 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`conformance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = EXIT_FAILED;
});
