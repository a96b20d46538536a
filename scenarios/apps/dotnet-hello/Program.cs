using Humanizer;

var app = WebApplication.CreateBuilder(args).Build();
app.MapGet("/", () => $"deployed {TimeSpan.FromMinutes(90).Humanize()} ago");
app.Run();
