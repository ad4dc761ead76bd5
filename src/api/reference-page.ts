import fs from 'node:fs';
import path from 'node:path';

/**
 * The rendered API reference at /docs: Swagger UI from the swagger-ui-dist
 * package, served by the API itself (no CDN), reading /openapi.json.
 */
export interface Asset {
  body: string;
  type: string;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>sagaflow API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="reference"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#reference', deepLinking: true, persistAuthorization: true });\n`;

let cache: Record<string, Asset> | undefined;

/** The page and its assets by path, read once. */
export function referenceAssets(): Record<string, Asset> {
  if (cache) return cache;
  const dir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  const file = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
  cache = {
    '/docs': { body: PAGE, type: 'text/html; charset=utf-8' },
    '/docs/init.js': { body: INIT, type: 'text/javascript; charset=utf-8' },
    '/docs/swagger-ui.css': { body: file('swagger-ui.css'), type: 'text/css; charset=utf-8' },
    '/docs/swagger-ui-bundle.js': { body: file('swagger-ui-bundle.js'), type: 'text/javascript; charset=utf-8' },
  };
  return cache;
}
