/** The most events any window of one second [t, t + 1000) holds, t being an event; `sorted` in ms, ascending. */
export function busiestSecond(sorted: number[]): number {
  let most = 0;
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j < sorted.length && sorted[j]! < sorted[i]! + 1000) j++;
    most = Math.max(most, j - i);
  }
  return most;
}
