// The page's view of the server config (GET /config.json from the longshore server).

export interface AppConfig {
  proxyBase: string;
  registries: string[];
  defaultReference?: string;
}

export async function loadAppConfig(origin: string = location.origin): Promise<AppConfig> {
  const fallback: AppConfig = { proxyBase: origin, registries: [] };
  try {
    const res = await fetch(`${origin}/config.json`, { cache: 'no-store' });
    if (!res.ok) return fallback;
    const body = (await res.json()) as Partial<AppConfig> & { proxyPath?: string };
    const proxyBase = body.proxyBase ?? origin;
    return { ...fallback, ...body, proxyBase: new URL(proxyBase, origin).toString().replace(/\/$/, '') };
  } catch {
    return fallback;
  }
}
