// One jest run covers the workspace; each project is one package or one way of running it.

/** @param {string} name @param {string} dir @param {object} [extra] */
function project(name, dir, extra = {}) {
  return {
    displayName: name,
    rootDir: `<rootDir>/${dir}`,
    testEnvironment: 'node',
    transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: `${__dirname}/tsconfig.base.json` }] },
    testMatch: ['<rootDir>/**/*.test.ts'],
    ...extra,
  };
}

module.exports = {
  testTimeout: 30000,
  projects: [
    project('common', 'packages/common'),
    project('tokens', 'packages/tokens'),
    project('testing', 'packages/testing'),
    project('auth', 'services/auth'),
    // With a PostgreSQL server for the tests, the auth and session suites run once more on the
    // embedded database, so the PGlite path (what `npm start` uses by default) stays tested.
    // Without one, the `auth` project already runs on PGlite.
    ...(process.env.TEST_DATABASE_URL
      ? [
          project('auth-pglite', 'services/auth', {
            testMatch: ['<rootDir>/test/auth.int.test.ts', '<rootDir>/test/sessions.int.test.ts'],
            setupFiles: [`${__dirname}/packages/testing/src/use-pglite.ts`],
          }),
        ]
      : []),
    project('content', 'services/content'),
    project('gateway', 'gateway'),
    // The benchmark's and the soak's own logic (the runs themselves are in e2e's smoke tests).
    project('scripts', 'scripts'),
    project('e2e', 'test/e2e', { testTimeout: 90000 }),
  ],
};
