// httpget URL [--timeout SECONDS] [--retries N]: one GET with System.Net.Http.HttpClient, as .NET
// code such as Oryx makes it (docs/oryx.md). `new HttpClient()` keeps its default Timeout (100 s)
// unless --timeout is given. --retries N puts Oryx's retry policy inside the client, where
// Oryx's AddPolicyHandler puts Polly's: on HttpRequestException, 5xx, 408 or 404, wait 2^n s
// (2, 4, 8, ...) and try again, N times; HttpClient's Timeout covers the attempts and the waits.
//
// Prints `HTTP <status>` when a response arrives; on an exception, its chain as .NET prints it
// (`Type: message`, then ` ---> Type: message` per inner exception). Always ends with one JSON
// line: {"seconds", "error_type", "message", "inner": [...], "attempts"}. Exit 1 on failure.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

static class HttpGet
{
    static int Main(string[] args)
    {
        string url = null;
        double? timeout = null;
        int retries = 0;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--timeout" && i + 1 < args.Length)
                timeout = double.Parse(args[++i], CultureInfo.InvariantCulture);
            else if (args[i] == "--retries" && i + 1 < args.Length)
                retries = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else if (url == null && !args[i].StartsWith("--"))
                url = args[i];
            else
                return Usage();
        }
        if (url == null)
            return Usage();

        var watch = Stopwatch.StartNew();
        var retry = new RetryHandler(retries, watch) { InnerHandler = new HttpClientHandler() };
        var client = retries > 0 ? new HttpClient(retry) : new HttpClient();
        if (timeout.HasValue)
            client.Timeout = TimeSpan.FromSeconds(timeout.Value);
        try
        {
            using (var response = client.GetAsync(url).GetAwaiter().GetResult())
            {
                Console.WriteLine("HTTP " + (int)response.StatusCode);
                response.EnsureSuccessStatusCode();
            }
        }
        catch (Exception error)
        {
            watch.Stop();
            var inner = new List<string>();
            for (var e = error.InnerException; e != null; e = e.InnerException)
                inner.Add(e.GetType().FullName + ": " + e.Message);
            Console.WriteLine(error.GetType().FullName + ": " + error.Message);
            foreach (var line in inner)
                Console.WriteLine(" ---> " + line);
            Console.WriteLine(Outcome(watch, error.GetType().FullName, error.Message, inner, retry));
            return 1;
        }
        watch.Stop();
        Console.WriteLine(Outcome(watch, null, null, new List<string>(), retry));
        return 0;
    }

    static int Usage()
    {
        Console.Error.WriteLine("usage: httpget URL [--timeout SECONDS] [--retries N]");
        return 2;
    }

    static string Outcome(Stopwatch watch, string type, string message, List<string> inner, RetryHandler retry)
    {
        var items = new List<string>();
        foreach (var line in inner)
            items.Add(Json(line));
        return "{\"seconds\": " + watch.Elapsed.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)
            + ", \"error_type\": " + Json(type) + ", \"message\": " + Json(message)
            + ", \"inner\": [" + string.Join(", ", items) + "]"
            + ", \"attempts\": " + Math.Max(retry.Attempts, 1) + "}";
    }

    static string Json(string text)
    {
        if (text == null)
            return "null";
        var built = new StringBuilder("\"");
        foreach (char c in text)
        {
            if (c == '"' || c == '\\')
                built.Append('\\').Append(c);
            else if (c < ' ')
                built.Append("\\u").Append(((int)c).ToString("x4"));
            else
                built.Append(c);
        }
        return built.Append('"').ToString();
    }
}

// Polly's WaitAndRetryAsync(retries, n => 2^n s) over HandleTransientHttpError().OrResult(404),
// written out: the wait is Task.Delay(wait, token), so HttpClient's Timeout can end it.
class RetryHandler : DelegatingHandler
{
    readonly int retries;
    readonly Stopwatch watch;
    public int Attempts;

    public RetryHandler(int retries, Stopwatch watch)
    {
        this.retries = retries;
        this.watch = watch;
    }

    protected override async Task<HttpResponseMessage> SendAsync(
        HttpRequestMessage request, CancellationToken cancellationToken)
    {
        for (int attempt = 1; ; attempt++)
        {
            Attempts = attempt;
            string failure;
            try
            {
                var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
                int status = (int)response.StatusCode;
                if (attempt > retries || !(status >= 500 || status == 408 || status == 404))
                    return response;
                failure = "HTTP " + status;
                response.Dispose();
            }
            catch (HttpRequestException error) when (attempt <= retries)
            {
                failure = error.GetType().FullName + ": " + error.Message;
            }
            var wait = TimeSpan.FromSeconds(Math.Pow(2, attempt));
            Console.WriteLine(string.Format(CultureInfo.InvariantCulture,
                "attempt {0} failed at {1:0.00} s ({2}); retrying in {3} s",
                attempt, watch.Elapsed.TotalSeconds, failure, wait.TotalSeconds));
            await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
        }
    }
}
