import OpenAICLI

await OpenAIMain.main()
