// axe-core in the page under test: WCAG 2.x A and AA rules, violations as short readable lines.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { E2EPage } from './e2e.ts';

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export async function axeViolations(page: E2EPage): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScript(AXE_SOURCE);
  return page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: { run(ctx: Document, opts: unknown): Promise<{ violations: { id: string; help: string; nodes: { target: unknown[] }[] }[] }> };
      }
    ).axe;
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } });
    return r.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${v.help} at ${JSON.stringify(n.target)}`));
  });
}
