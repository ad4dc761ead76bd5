import type { TestStack } from '../../dev/test-stack';

export default async function globalTeardown(): Promise<void> {
  await ((globalThis as Record<string, unknown>).__sagaflowStack as TestStack | undefined)?.stop();
}
