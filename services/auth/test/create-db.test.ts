// PGlite is loaded only for the embedded database: on PostgreSQL it would be memory for
// nothing. The real package is loaded; the factory only notes when that happens.
let mockPgliteLoads = 0;
jest.mock('knex-pglite', () => {
  mockPgliteLoads += 1;
  return jest.requireActual('knex-pglite');
});

describe('createDb', () => {
  it('opens PostgreSQL without loading PGlite, and loads it for the embedded database', async () => {
    // Required here, after the counter exists: an import would load it before.
    const { createDb } = require('../src/db/create-db') as typeof import('../src/db/create-db');
    // No connection is made until the first query, so no server is needed here.
    const postgres = createDb({ databaseUrl: 'postgres://127.0.0.1:1/none', dataDir: 'unused', poolMax: 1 });
    expect(postgres.kind).toBe('postgres');
    await postgres.close();
    expect(mockPgliteLoads).toBe(0);

    const embedded = createDb({ dataDir: 'memory://', poolMax: 1 });
    try {
      expect(embedded.kind).toBe('pglite');
      const { rows } = (await embedded.knex.raw('select 1 + 1 as two')) as { rows: { two: number }[] };
      expect(rows).toEqual([{ two: 2 }]);
      expect(mockPgliteLoads).toBe(1);
    } finally {
      await embedded.close();
    }
  });
});
