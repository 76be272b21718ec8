// The app's page as the end-to-end tests drive it: selectors for its controls (labels and test ids
// from src/ui) and the few steps every pull test takes, on the driver-neutral page (e2e.ts).
import { expect } from 'vitest';
import type { E2EPage } from './e2e.ts';

export const SEL = {
  name: '#image-name',
  pull: 'form.pull-form button[type="submit"]',
  cancel: 'form.pull-form .actions button.secondary',
  platform: '#platform',
  format: '#format',
  allPlatforms: 'form.pull-form label.check input[type="checkbox"]',
  signIn: 'form.pull-form details.auth summary',
  // The sign-in fields are per registry (CredentialsPanel); these tests name one registry.
  username: 'details.auth input[autocomplete="username"]',
  password: 'details.auth input[autocomplete="current-password"]',
  saveTo: '#save-to',
  saveHelp: '[data-testid="save-help"]',
  keepCopy: 'input[aria-describedby="keep-help"]',
  status: '[data-testid="status"]',
  error: '[data-testid="error"]',
  download: '[data-testid="download"]',
  saved: '[data-testid="saved"]',
  saveProgress: '[data-testid="save-progress"]',
  nameHelp: '[data-testid="name-help"]',
  unfinished: '[data-testid="unfinished-entry"]',
  browsePulled: '[data-testid="browse-pulled"]',
  capability: (id: string) => `[data-testid="browser-support"] [data-capability="${id}"]`,
};

/** Wait until the pull ended; throws with the page's message if it failed. */
export async function waitPulled(page: E2EPage, done: string, timeout = 60_000): Promise<void> {
  const hit = await page.waitForAny([done, SEL.error], timeout);
  if (hit === SEL.error) throw new Error(`pull failed in the page (${page.engine}): ${await page.text(SEL.error)}`);
}

/** Wait until the pull failed with `code` and the Pull button is usable again. */
export async function waitFailed(page: E2EPage, code: string, timeout = 60_000): Promise<void> {
  await page.waitFor(SEL.error, { timeout });
  expect(await page.attr(SEL.error, 'data-code')).toBe(code);
  await expect.poll(() => page.isDisabled(SEL.pull)).toBe(false);
}
