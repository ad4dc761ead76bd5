const path = require('node:path');

/**
 * Prints the one line CI reads: `N passed, N failed`. Before it, one `[failed]` block per
 * failed test or suite that could not run (its file, its name, the first lines of its error),
 * so that the end of a long log, which is the part most often kept, names what failed.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const blocks = [];
    for (const suite of results.testResults) {
      const file = path.relative(process.cwd(), suite.testFilePath);
      if (suite.testExecError || (suite.failureMessage && suite.numFailingTests === 0)) {
        blocks.push(block(`${file} (the file did not run)`, suite.testExecError?.message ?? suite.failureMessage));
      }
      for (const test of suite.testResults) {
        if (test.status === 'failed') blocks.push(block(`${file} › ${test.fullName}`, test.failureMessages.join('\n')));
      }
    }
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`${blocks.length ? `\n${blocks.join('\n')}` : ''}\n${results.numPassedTests} passed, ${failed} failed\n`);
  }
}

/** A failure in a few lines, each marked so that CI can gather them from every suite's log. */
function block(title, message = '') {
  const lines = String(message)
    // eslint-disable-next-line no-control-regex
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== '')
    .slice(0, 12);
  return [`[failed] ${title}`, ...lines.map((line) => `[failed]   ${line}`)].join('\n');
}

module.exports = SummaryReporter;
