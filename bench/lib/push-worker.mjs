// Pushes the image tagged `latest` in an OCI layout to REF with builder's library (compiled
// dist/), as `build --push` does: blobs four at a time from the content store, then the manifest.
// builder has no command that pushes a layout, so the transfer bench runs this in its place.
//
//   node bench/lib/push-worker.mjs LAYOUT REF

import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { ContentStore } from '../../dist/cache/content-store.js';
import { RegistryClient, StaticCredentialStore, parseReference } from '../../dist/registry/index.js';

const [layout, refText] = process.argv.slice(2);
const client = new RegistryClient({ credentials: new StaticCredentialStore() });
const ref = parseReference(refText);
try {
  const store = new ContentStore(layout);
  const top = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')).manifests[0];
  const bytes = await store.readBytes(top.digest);
  const manifest = JSON.parse(bytes.toString('utf8'));
  const limit = pLimit(4);
  const open = (d) => createReadStream(store.path(d.digest), { highWaterMark: 256 * 1024 });
  await Promise.all([...manifest.layers, manifest.config].map((d) => limit(() => client.pushBlob(ref, d, () => open(d)))));
  await client.pushManifest(ref, top.mediaType, bytes);
} finally {
  await client.close();
}
