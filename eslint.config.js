// One lint config for the workspace (flat config).
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const jest = require('eslint-plugin-jest');

module.exports = tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '**/.data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', require: 'readonly', module: 'writable', __dirname: 'readonly', console: 'readonly' } },
    rules: {
      'no-console': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: ['**/*.test.ts'],
    ...jest.configs['flat/recommended'],
    rules: {
      ...jest.configs['flat/recommended'].rules,
      'jest/no-focused-tests': 'error',
      'jest/expect-expect': 'off',
      // `it` or `it.skip`, chosen by whether an outside tool is there (runsWithTool in
      // test/e2e/stack.ts) or by the platform (itOnLinux in services/auth/test/bcrypt-pool.test.ts).
      'jest/no-standalone-expect': ['error', { additionalTestBlockFunctions: ['itWithDockerCompose', 'itOnLinux'] }],
    },
  },
  {
    files: ['*.js', 'scripts/**/*.mjs'],
    rules: { 'no-console': 'off' },
  },
);
