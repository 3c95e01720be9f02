def main():
    print("suan")
