postMessage('hello');
