// Where a registry's API is served: the registry itself (HTTPS, or plain HTTP for loopback and
// configured insecure registries) and, for Docker Hub pulls, the configured mirrors before it.

import { DOCKER_HUB, isInsecureByDefault, registryHost, type ImageReference } from './reference.js';

/** Where requests for one registry go: the registry itself or a mirror of it. */
export interface Endpoint {
  /** Name credentials and errors use: `docker.io`, `127.0.0.1:5000`, a mirror's host. */
  registry: string;
  /** host[:port] the API is served at. */
  host: string;
  /** `https://host` or `http://host`. */
  origin: string;
  mirror: boolean;
}

export class Endpoints {
  private readonly mirrors: readonly Endpoint[];

  /**
   * `insecure`: registries (host or host:port) spoken to over plain HTTP besides loopback ones.
   * `mirrors`: pull-through mirrors of Docker Hub, tried in order before it.
   */
  constructor(
    private readonly insecure: readonly string[],
    mirrors: readonly string[],
  ) {
    this.mirrors = mirrors.map((m) => parseMirror(m, insecure));
  }

  /** The registry itself (pushes, and pulls from anything but Docker Hub). */
  origin(registry: string): Endpoint {
    const host = registryHost(registry);
    const scheme = isInsecureByDefault(host, this.insecure) || isInsecureByDefault(registry, this.insecure) ? 'http' : 'https';
    return { registry, host, origin: `${scheme}://${host}`, mirror: false };
  }

  /** Runs `fn` against each place pulls of `ref` go (mirrors, then the registry) until one succeeds; the origin's error is the one reported. */
  async pull<T>(ref: ImageReference, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const origin = this.origin(ref.registry);
    const endpoints = ref.registry === DOCKER_HUB && this.mirrors.length > 0 ? [...this.mirrors, origin] : [origin];
    for (let i = 0; ; i++) {
      const ep = endpoints[i] as Endpoint;
      try {
        return await fn(ep);
      } catch (err) {
        // A mirror that fails in any way (down, missing the image, refusing us) is skipped.
        if (i >= endpoints.length - 1) throw err;
      }
    }
  }
}

/** The URL of `path` (`manifests/latest`, `blobs/sha256:…`) in `ref`'s repository at `ep`. */
export function apiUrl(ep: Endpoint, ref: ImageReference, path: string): URL {
  return new URL(`${ep.origin}/v2/${ref.repository}/${path}`);
}

/** `https://mirror.example.com`, `http://10.0.0.5:5000/`, `127.0.0.1:5001` → an endpoint. */
function parseMirror(text: string, insecure: readonly string[]): Endpoint {
  const m = /^(?:(https?):\/\/)?([^/]+)\/*$/i.exec(text.trim());
  if (!m) throw new Error(`invalid registry mirror "${text}": expected [http[s]://]host[:port]`);
  const host = (m[2] as string).toLowerCase();
  const scheme = m[1]?.toLowerCase() ?? (isInsecureByDefault(host, insecure) ? 'http' : 'https');
  return { registry: host, host, origin: `${scheme}://${host}`, mirror: true };
}
