import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Tests mount filesystems and start runc containers: keep files in separate processes.
    pool: 'forks',
  },
});
