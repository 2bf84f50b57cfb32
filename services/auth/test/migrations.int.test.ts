import { createTestDatabase, type TestDatabase } from '@gatehouse/testing';
import { createDb, migrateDb, type Db } from '../src/db/create-db';
import { migrationSource } from '../src/db/migrations';

// Several instances starting at once on one PostgreSQL all migrate; none crashes on a table
// another one is creating. (The embedded database belongs to one process, so PostgreSQL only.)
const describeOnPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

describeOnPostgres('migrateDb from several instances at once', () => {
  let database: TestDatabase;
  const pools: Db[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
  });

  afterAll(async () => {
    for (const pool of pools) await pool.close();
    await database.drop();
  });

  it('lets every instance start, applying each migration exactly once', async () => {
    for (let i = 0; i < 4; i++) pools.push(createDb({ databaseUrl: database.databaseUrl, dataDir: 'unused', poolMax: 3 }));
    const results = await Promise.allSettled(pools.map((pool) => migrateDb(pool.knex)));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);

    const knex = pools[0]!.knex;
    const expected = (await migrationSource.getMigrations([])).map((migration) => migrationSource.getMigrationName(migration));
    const applied = await knex('knex_migrations').orderBy('id').pluck('name');
    expect(applied).toEqual(expected);
    // The lock is released: a later start migrates (nothing) without waiting.
    await expect(migrateDb(knex)).resolves.toBeUndefined();
  });
});
