import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildUser } from '@gatehouse/testing';
import { runsWithTool, startStack, type RunningStack } from './stack';

// The web console in Debian's Chromium, against the whole stack: sign up, sign in, the boards,
// and an admin promoting the user, under the console's Content-Security-Policy. A screenshot
// of every step goes to test/e2e/artifacts/.

const CHROMIUM = '/usr/bin/chromium';
const root = path.resolve(__dirname, '../..');
const artifacts = path.join(__dirname, 'artifacts');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-console-e2e-'));
const admin = buildUser({ username: `admin_${Date.now().toString(36)}` });
const alice = buildUser();
/** The user's id, as the admin's user list shows it. */
let aliceId = '';

let stack: RunningStack | undefined;
let front: { url: string; close(): Promise<void> } | undefined;
let browser: Browser | undefined;
let page: Page;
/** CSP and Trusted Types violations and uncaught errors in the page. */
const pageProblems: string[] = [];

/** Where the browser opens the console: the stack's gateway serves it beside the API. */
async function openConsole(running: RunningStack): Promise<{ url: string; close(): Promise<void> }> {
  return { url: `${running.gatewayUrl}/console/`, close: async () => {} };
}

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(artifacts, `console-${name}.png`), fullPage: true });
}

async function signIn(username: string, password: string): Promise<void> {
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#who', { hasText: `Signed in as ${username}` }).waitFor();
}

async function signOut(): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: "You've been signed out!" }).waitFor();
  await page.locator('#who', { hasText: 'Signed out' }).waitFor();
}

/** Opens a board from the navigation and returns what it shows: the content or the error. */
async function openBoard(linkName: string): Promise<string> {
  await page.getByRole('link', { name: linkName }).click();
  // The view changes on the hashchange after the click; until then the previous board and its
  // answer are still on the page (read too early, the admin board once showed "User Content.").
  await page.getByRole('heading', { name: linkName, exact: true }).waitFor();
  const shown = page.locator('.board-result').locator('.board, [role=alert]');
  await shown.waitFor();
  return (await shown.textContent()) ?? '';
}

// Debian's Chromium, never a downloaded browser: CI installs it (.ci/run); elsewhere the test
// is skipped, with a note, where it is missing.
const describeWithChromium = runsWithTool(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y chromium)`) ? describe : describe.skip;

describeWithChromium('the web console in Chromium', () => {
  beforeAll(async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    // The console as `pnpm install` builds it, from the sources as they are now.
    execFileSync(process.execPath, [path.join(root, 'console', 'build.mjs')], { cwd: root, stdio: 'pipe' });
    stack = await startStack({
      DATA_DIR: dataDir,
      DATABASE_URL: '',
      LOG_LEVEL: 'warn',
      BCRYPT_COST: '4',
      ADMIN_USERNAME: admin.username,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
    });
    front = await openConsole(stack);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (error) => pageProblems.push(`uncaught: ${error.message}`));
    page.on('console', (message) => {
      // Refused API calls (403s) are logged as errors too; only policy violations count here.
      if (/Content Security Policy|Trusted ?Type|TrustedHTML|TrustedScript/i.test(message.text())) pageProblems.push(message.text());
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await front?.close();
    stack?.kill();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('loads under its Content-Security-Policy, which allows nothing inline', async () => {
    if (!front) throw new Error('console not served');
    const res = await page.goto(front.url);
    const csp = (await res?.allHeaders())?.['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.locator('#who').textContent()).toBe('Signed out');
    await screenshot('01-start');
  });

  it('signs a user up', async () => {
    await page.getByRole('link', { name: 'Sign up' }).click();
    await page.getByLabel('Username').fill(alice.username);
    await page.getByLabel('Email').fill(alice.email);
    await page.getByLabel('Password').fill(alice.password);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByRole('status').filter({ hasText: 'User registered successfully!' }).waitFor();
    await screenshot('02-signed-up');
  });

  it('signs the user in and shows the user board; a reload keeps the session', async () => {
    await signIn(alice.username, alice.password);
    await page.locator('.board', { hasText: 'User Content.' }).waitFor();
    await screenshot('03-user-board');
    await page.reload();
    await page.locator('#who', { hasText: `Signed in as ${alice.username} (ROLE_USER)` }).waitFor();
    expect(await openBoard('User board')).toBe('User Content.');
  });

  it('shows the 403 message on the admin board, and no admin pages', async () => {
    const shown = await openBoard('Admin board');
    expect(shown).toContain('Require Admin Role!');
    expect(shown).toContain('403 auth.missing_role');
    expect(await page.getByRole('link', { name: 'Users' }).count()).toBe(0);
    await screenshot('04-admin-board-refused');
    await signOut();
  });

  it('lets the admin find the user and make them a moderator', async () => {
    await signIn(admin.username, admin.password);
    expect(await openBoard('Admin board')).toBe('Admin Content.');
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('Search users').fill(alice.username);
    await page.getByRole('button', { name: 'Search' }).click();
    // The search's answer replaces the first page (the admin and the user).
    await page.getByText('1–1 of 1').waitFor();
    expect(await page.locator('table[aria-label="Users"] tbody tr').count()).toBe(1);
    const row = page.getByRole('row', { name: alice.username });
    aliceId = (await row.getAttribute('data-user-id')) ?? '';
    expect(await row.getByLabel('moderator', { exact: true }).isChecked()).toBe(false);
    await screenshot('05-users-search');

    await row.getByLabel('moderator', { exact: true }).check();
    await row.getByRole('button', { name: 'Save roles' }).click();
    await page.getByRole('status').filter({ hasText: `${alice.username}: User roles updated successfully!` }).waitFor();
    const updated = page.getByRole('row', { name: alice.username });
    expect(await updated.getByLabel('user', { exact: true }).isChecked()).toBe(true);
    expect(await updated.getByLabel('moderator', { exact: true }).isChecked()).toBe(true);
    expect(await updated.getByLabel('admin', { exact: true }).isChecked()).toBe(false);
    await screenshot('06-user-promoted');
  });

  it('shows the role change in the audit log', async () => {
    await page.getByRole('link', { name: 'Audit log' }).click();
    const newest = page.locator('table[aria-label="Audit log"] tbody tr').first();
    await newest.locator('td', { hasText: 'user.roles_changed' }).waitFor();
    const cells = await newest.locator('td').allTextContents();
    expect(cells[1]).toBe('user.roles_changed');
    expect(cells[2]).toBe(aliceId);
    expect(cells[3]).toMatch(/^[1-9][0-9]*$/);
    expect(cells[3]).not.toBe(aliceId);
    expect(JSON.parse(cells[5] ?? '')).toEqual({ from: ['user'], to: ['user', 'moderator'] });
    await page.getByLabel('Type').selectOption('user.roles_changed');
    const rows = page.locator('table[aria-label="Audit log"] tbody tr');
    await rows.filter({ hasNotText: 'user.roles_changed' }).first().waitFor({ state: 'detached' });
    expect(await rows.count()).toBe(1);
    await screenshot('07-audit-log');
    await signOut();
  });

  it('shows the moderator board to the user once signed in again', async () => {
    await signIn(alice.username, alice.password);
    expect(await page.locator('#who').textContent()).toBe(`Signed in as ${alice.username} (ROLE_USER, ROLE_MODERATOR)`);
    expect(await openBoard('Moderator board')).toBe('Moderator Content.');
    await screenshot('08-moderator-board');
  });

  it('ran without a policy violation or an uncaught error', () => {
    expect(pageProblems).toEqual([]);
  });
});
