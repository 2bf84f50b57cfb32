import { accountChecks } from './account-checks';
import { createCheckContext, type Check, type CheckContext, type CheckGroup } from './context';
import { headerChecks, rateLimitChecks } from './header-checks';
import { inputChecks } from './input-checks';
import { tokenChecks } from './token-checks';

export { CHECK_GROUPS, type Check, type CheckContext, type CheckGroup } from './context';

/**
 * Every conformance check, in the order they run.
 *
 * @remarks Each check makes its own fresh users, so checks are independent of each other and
 * of whatever else runs against the same deployment.
 */
export const CHECKS: readonly Check[] = [...tokenChecks, ...accountChecks, ...inputChecks, ...headerChecks, ...rateLimitChecks];

/** The outcome of one check. */
export interface CheckResult {
  group: CheckGroup;
  name: string;
  outcome: 'pass' | 'fail' | 'skip';
  /** Why it failed or was skipped. */
  reason?: string;
  /** What a passing check measured, if anything (the timing ratio). */
  detail?: string;
  durationMs: number;
}

/** What to run, and where to report results as they come. */
export interface RunOptions {
  /** Run the rate-limit check too; it blocks the caller's address at the gateway for a while. */
  includeRateLimit?: boolean;
  /** Only the checks of these groups (all groups when omitted). */
  groups?: readonly CheckGroup[];
  /** The checks to run instead of `CHECKS` (for tests of the runner itself). */
  checks?: readonly Check[];
  /** Called with each result as soon as its check is done. */
  onResult?: (result: CheckResult) => void;
}

const OPT_IN_REASON = { 'rate-limit': 'opt-in: blocks this client for a while; run with --include-rate-limit' } as const;

/**
 * Runs the checks one after another against the Gatehouse deployment whose gateway is at
 * `base`, and returns one result per check. Never throws for a failing check.
 *
 * @remarks Sequential on purpose: the timing check must not share the server with the others.
 */
export async function runChecks(base: string, options: RunOptions = {}): Promise<CheckResult[]> {
  const ctx = createCheckContext(base);
  const selected = (options.checks ?? CHECKS).filter((check) => !options.groups || options.groups.includes(check.group));
  const results: CheckResult[] = [];
  for (const check of selected) {
    const result = await runOne(check, ctx, options);
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}

async function runOne(check: Check, ctx: CheckContext, options: RunOptions): Promise<CheckResult> {
  const { group, name } = check;
  if (check.optIn === 'rate-limit' && !options.includeRateLimit) {
    return { group, name, outcome: 'skip', reason: OPT_IN_REASON[check.optIn], durationMs: 0 };
  }
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const detail = await check.run(ctx);
    return { group, name, outcome: 'pass', ...(detail ? { detail } : {}), durationMs: elapsed() };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { group, name, outcome: 'fail', reason, durationMs: elapsed() };
  }
}

/** One line per result: `PASS <group> <name>`, `FAIL <group> <name> — <reason>`, `SKIP …`. */
export function formatResult(result: CheckResult): string {
  const note = result.outcome === 'pass' ? result.detail : result.reason;
  return `${result.outcome.toUpperCase()} ${result.group} ${result.name}${note ? ` — ${note}` : ''}`;
}

/** The summary line: `N passed, M failed`. */
export function formatSummary(results: readonly CheckResult[]): string {
  const count = (outcome: CheckResult['outcome']) => results.filter((result) => result.outcome === outcome).length;
  return `${count('pass')} passed, ${count('fail')} failed`;
}
