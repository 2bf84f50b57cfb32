import { parseArgs } from 'node:util';
import { ZodError } from 'zod';
import { createLogger } from '@gatehouse/common';
import { ROLES, type RoleName } from '@gatehouse/tokens';
import { loadConfig } from './config';
import { createDb, migrateDb } from './db/create-db';
import { createRepositories } from './db/repositories';
import { createAdminService } from './services/admin.service';
import { createAdmin } from './services/bootstrap-admin';
import { createPasswordHasher } from './services/passwords';
import { keyRetentionSeconds, rotateSigningKey } from './services/signing-keys';

const USAGE = `Gatehouse auth CLI (uses DATABASE_URL, else the embedded database under DATA_DIR)

  create-admin --username NAME --email EMAIL [--password PASSWORD]
      Creates a user with the roles user and admin. The password comes from --password or,
      better (it stays out of shell history), from the ADMIN_PASSWORD environment variable.

  set-roles --username NAME --roles ROLE[,ROLE...]
      Gives the user exactly these roles (${ROLES.join(', ')}). The user's access tokens
      issued before stop being accepted within seconds; refreshed ones carry the new roles.

  rotate-keys [--activate-after SECONDS] [--remove-old]
      Creates a new signing key and publishes it at once; it signs new tokens from
      --activate-after seconds on (default 15, longer than the content service's 10 s JWKS
      refetch limit, so no verifier meets it unprepared), picked up by each auth instance
      within SIGNING_KEY_RELOAD_MS. The old public key stays in the JWKS for one access-token
      lifetime plus 5 minutes after that, then goes.
      --remove-old is for a leaked key: the new key signs at once and the old keys are deleted;
      tokens they signed stop verifying as soon as verifiers refresh their key cache.

  migrate
      Brings the database schema up to date (the auth service also does this at start).
`;

class UsageError extends Error {}

function parseRoles(value: string | undefined): RoleName[] {
  const names = (value ?? '').split(',').map((name) => name.trim()).filter(Boolean);
  if (names.length === 0) throw new UsageError('--roles needs at least one role');
  return names.map((name) => {
    const role = ROLES.find((known) => known === name);
    if (!role) throw new UsageError(`Role does not exist: ${name} (known: ${ROLES.join(', ')})`);
    return role;
  });
}

/** Runs one CLI command; returns the process exit code. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv, out: (line: string) => void): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      username: { type: 'string' },
      email: { type: 'string' },
      password: { type: 'string' },
      roles: { type: 'string' },
      'remove-old': { type: 'boolean' },
      'activate-after': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command] = positionals;
  if (values.help || !command) {
    out(USAGE);
    return command || values.help ? 0 : 2;
  }

  const config = loadConfig(env);
  const db = createDb(config);
  try {
    await migrateDb(db.knex, createLogger({ service: 'auth-cli', level: 'warn' }));
    const { users } = createRepositories(db.knex);
    const clock = () => new Date();
    switch (command) {
      case 'migrate':
        out('Database schema is up to date.');
        return 0;
      case 'create-admin': {
        const account = { username: values.username, email: values.email, password: values.password ?? env.ADMIN_PASSWORD };
        const user = await createAdmin(db.knex, account, {
          passwords: createPasswordHasher(config.bcryptCost),
          clock,
          via: 'cli',
        });
        out(`Created admin ${user.username} (id ${user.id}) with roles ${user.roles.join(', ')}.`);
        return 0;
      }
      case 'set-roles': {
        if (!values.username) throw new UsageError('--username is required');
        const roles = parseRoles(values.roles);
        const user = await users.findUserByUsername(values.username);
        if (!user) {
          out(`No user named ${values.username}.`);
          return 1;
        }
        await createAdminService({ knex: db.knex, clock }).setRoles(user.id, roles, {});
        out(`${user.username} now has the roles ${roles.join(', ')}. Its older tokens stop being accepted within seconds.`);
        return 0;
      }
      case 'rotate-keys': {
        const activateAfterSeconds = Number(values['activate-after'] ?? 15);
        if (!Number.isInteger(activateAfterSeconds) || activateAfterSeconds < 0 || activateAfterSeconds > 86_400) {
          throw new UsageError('--activate-after takes whole seconds, 0 … 86400');
        }
        const rotation = await rotateSigningKey(db.knex, {
          clock,
          accessTokenTtlSeconds: config.accessTokenTtlSeconds,
          activateAfterSeconds,
          removeOld: values['remove-old'],
        });
        out(`New signing key ${rotation.kid}, signing from ${rotation.activatesAt.toISOString()}.`);
        if (rotation.retired.length > 0) {
          out(`Retired (published for ${keyRetentionSeconds(config.accessTokenTtlSeconds)} s more): ${rotation.retired.join(', ')}.`);
        }
        if (rotation.removed.length > 0) out(`Removed: ${rotation.removed.join(', ')}.`);
        return 0;
      }
      default:
        throw new UsageError(`Unknown command: ${command}`);
    }
  } finally {
    await db.close();
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), process.env, (line) => process.stdout.write(`${line}\n`))
    .then((code) => process.exit(code))
    .catch((err: unknown) => {
      const message = describeError(err);
      process.stderr.write(`${message}\n`);
      process.exit(err instanceof UsageError ? 2 : 1);
    });
}

function describeError(err: unknown): string {
  if (err instanceof UsageError) return `${err.message}\n\n${USAGE}`;
  if (err instanceof ZodError) return err.issues.map((issue) => `${issue.path.join('.') || 'input'}: ${issue.message}`).join('\n');
  return err instanceof Error ? err.message : String(err);
}
