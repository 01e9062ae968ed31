// `--platform` inputs and their normalised form (defaults: linux/amd64).
export const platformCases: Array<[string, string]> = [
  ['linux/arm64', 'linux/arm64'],
  ['linux/arm64/v8', 'linux/arm64'],
  ['linux/aarch64', 'linux/arm64'],
  ['linux/x86_64', 'linux/amd64'],
  ['linux/arm', 'linux/arm/v7'],
  ['linux/armhf', 'linux/arm/v7'],
  ['arm64', 'linux/arm64'],
  ['linux', 'linux/amd64'],
  ['Linux/AMD64', 'linux/amd64'],
  ['windows/amd64', 'windows/amd64'],
];
