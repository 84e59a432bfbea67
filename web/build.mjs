// Builds the browser client into dist/: one bundled, minified script and one
// stylesheet, each named by a hash of its content (served as immutable), and
// index.html (served no-cache) pointing at them; and the service worker,
// sw.js (no-cache too). Everything the page loads is in dist/: no fonts,
// CDNs or other origins.
//   node build.mjs          the app
//   node build.mjs --unit   the unit tests (test/*.test.ts) for node --test, into dist-test/
import * as esbuild from 'esbuild';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;

async function buildUnitTests() {
  const out = join(here, 'dist-test');
  rmSync(out, { recursive: true, force: true });
  const entries = readdirSync(join(here, 'test')).filter((f) => f.endsWith('.test.ts'));
  await esbuild.build({
    entryPoints: entries.map((f) => join(here, 'test', f)),
    outdir: out, bundle: true, platform: 'node', format: 'esm',
    outExtension: { '.js': '.mjs' }, logLevel: 'warning',
  });
}

async function buildApp() {
  const out = join(here, 'dist');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, 'assets'), { recursive: true });
  const result = await esbuild.build({
    entryPoints: [join(here, 'src/main.ts'), join(here, 'src/style.css')],
    outdir: join(out, 'assets'), entryNames: '[name]-[hash]',
    bundle: true, minify: true, sourcemap: false, format: 'esm', target: 'es2022',
    metafile: true, logLevel: 'warning',
  });
  // the service worker: one classic script at /sw.js (its URL is its
  // identity to the browser, so it is not hashed; served no-cache)
  await esbuild.build({
    entryPoints: [join(here, 'src/sw.ts')], outfile: join(out, 'sw.js'),
    bundle: true, minify: true, sourcemap: false, format: 'iife', target: 'es2022', logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  const js = outputs.find((f) => f.endsWith('.js'));
  const css = outputs.find((f) => f.endsWith('.css'));
  if (!js || !css) throw new Error('build: missing output ' + outputs.join(','));
  writeFileSync(join(out, 'index.html'), `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'">
<title>parley</title>
<link rel="stylesheet" href="/assets/${css}">
</head>
<body>
<div id="app"></div>
<script type="module" src="/assets/${js}"></script>
</body>
</html>
`);
}

if (process.argv.includes('--unit')) await buildUnitTests();
else await buildApp();
