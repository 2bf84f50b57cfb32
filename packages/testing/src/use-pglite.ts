// jest setupFile of the `auth-pglite` project: run the auth suite on the embedded database.
process.env.GATEHOUSE_TEST_DB = 'pglite';
