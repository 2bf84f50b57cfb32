/**
 * A parsed JSON response body. Tests read bodies of every shape and check them with `expect`,
 * which is where their types are asserted, so the compiler is told not to.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above: expect() checks the shape
export type Json = any;

/** The response body parsed as JSON. */
export async function readJson(res: Response): Promise<Json> {
  return res.json();
}
