/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in order of `items`; rejects with
 * the first failure once the calls already started have settled (none is left running unobserved).
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  // An object, not locals: the lanes update it while others await.
  const outcome: { failure?: { error: unknown } } = {};
  const lane = async (): Promise<void> => {
    while (outcome.failure === undefined && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (error) {
        outcome.failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (outcome.failure !== undefined) throw outcome.failure.error;
  return results;
}
